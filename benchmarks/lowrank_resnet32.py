"""Low-rank decomposition of ResNet-32 on the CIFAR-10 JPEG copy (issue 6).

The baseline is `../shared/weights/cifar10-jpeg/resnet32.pth` (89.10 % on the test split). Each row
decomposes it with one method at about 2x or 5x fewer parameters (whole model; the first conv and
the classifier are kept, the budget is spread over the 30 other convolutions), repairs the start by
refitting each decomposed layer's last factor to the original layer's outputs on 512 training images
(`--reconstruct-images 0`: re-estimate BatchNorm on 20 batches instead), then fine-tunes it with
distillation from the baseline
for the same budget: `--epochs` epochs of KD (T = 4, 0.1 labels + 0.9 teacher), SGD + Nesterov,
lr 0.005 with a 0.1-epoch warm-up then cosine, batch 128, random crop + flip, weight decay 1e-4,
channels_last (`deepshrink.lowrank.finetune`). Rows: baseline, tucker-2x, tucker-5x, cp-2x, cp-5x,
spatial-2x, spatial-5x; each has `top1` after fine-tuning, `top1_decomposed` right after
decomposition and `top1_start` after the repair (`top1_bn` in rows measured before 2026-12).

    python benchmarks/lowrank_resnet32.py --epochs 3          # what the lead runs (hours on 2 CPU cores)
    python benchmarks/lowrank_resnet32.py --quick             # smoke run: a few batches per row, minutes

Writes docs/benchmarks/lowrank_resnet32.{json,md} (--quick: runs/benchmarks/lowrank_resnet32_quick.*)."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

from _common import (
    RowCache,
    add_budget_args,
    add_io_args,
    apply_threads,
    device_name,
    cifar10_jpeg,
    jpeg_baseline,
    row_names,
    write_results,
)
from deepshrink.data import sample_loader
from deepshrink.lowrank import decompose
from deepshrink.lowrank.finetune import finetune, recalibrate_bn_, recovery_config, refit_on_data_
from deepshrink.training import CHECKPOINT_FILE
from deepshrink.metrics import evaluate, profile
from deepshrink.metrics.benchmark import row_from_profile

ROOT = Path(__file__).resolve().parents[1]
NAME = "lowrank_resnet32"
ROWS = ("tucker-2x", "tucker-5x", "cp-2x", "cp-5x", "spatial-2x", "spatial-5x")


def parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--epochs", type=int, default=3, help="fine-tuning epochs of every row (default 3)")
    p.add_argument("--quick", action="store_true", help="smoke run: 1 epoch of 3 batches, 500 test images")
    p.add_argument("--rows", default=",".join(ROWS), help="comma-separated subset of " + ",".join(ROWS))
    p.add_argument("--allocation", choices=["uniform", "sensitivity"], default="uniform",
                   help="how the parameter budget is spread over the layers (default uniform)")
    p.add_argument("--calibration-images", type=int, default=64, help="training images for --allocation sensitivity")
    p.add_argument("--lr", type=float, default=0.005, help="peak fine-tuning learning rate (default 0.005)")
    p.add_argument("--grad-clip", type=float, default=None,
                   help="gradient-norm clip of the fine-tuning (default: the recovery recipe's)")
    p.add_argument("--mimic", type=float, default=0.0,
                   help="weight of stage-output feature mimicking beside KD (the `mimic` loss; default 0: off)")
    p.add_argument("--reconstruct-images", type=int, default=512,
                   help="training images the decomposed layers' last factors are refit on before fine-tuning "
                        "(0: re-estimate BatchNorm on --bn-batches instead, the recipe before 2026-12)")
    p.add_argument("--bn-batches", type=int, default=20, help="training batches for the BatchNorm re-estimation")
    add_io_args(p)
    add_budget_args(p)
    p.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--work", default=str(ROOT / "runs" / NAME), help="finished rows (JSON + ONNX), resumed when present")
    return p.parse_args(argv)



def decomposed_row(name, baseline, data, args, train, calibration, top1, base_profile, run_dir: Path):
    """Decompose, repair the start, fine-tune with KD from the baseline; (record, model). The
    fine-tuning checkpoints every epoch in `run_dir`, so a killed run resumes mid-row."""
    method, ratio = name.split("-")[0], float(name.split("-")[1].rstrip("x"))
    start = time.perf_counter()
    model = decompose(baseline, method=method, ratio=ratio, allocation=args.allocation, calibration=calibration)
    seconds_decompose = time.perf_counter() - start
    raw = top1(model)
    if args.reconstruct_images:  # refit each layer's last factor to the original outputs (lowrank.reconstruct)
        refit_on_data_(model, baseline, data, images=args.reconstruct_images, seed=args.seed)
        repair = f"last factors refit on {args.reconstruct_images} training images"
    else:
        recalibrate_bn_(model, data, batches=args.bn_batches, seed=args.seed)
        repair = f"BatchNorm re-estimated on {args.bn_batches} batches"
    repaired = top1(model)
    recipe = recovery_config(**train, mimic=args.mimic)
    resumed = (run_dir / CHECKPOINT_FILE).is_file()
    result = finetune(model, baseline, data, recipe, reconstruct_images=0, bn_batches=0, out_dir=run_dir, resume=True)
    model = result.model.to("cpu", memory_format=torch.contiguous_format).eval()
    measured = profile(model, runtimes=())
    record = row_from_profile(
        name, measured, top1=top1(model), top1_decomposed=raw, top1_start=repaired, start=repair, method=method, target_ratio=ratio,
        params_ratio=round(base_profile.params / measured.params, 3), macs_ratio=round(base_profile.macs / measured.macs, 3),
        ranks={e["name"]: e["ranks"] for e in model.deepshrink_spec.transforms[-1]["plan"]["layers"]},
        decompose_s=round(seconds_decompose, 1), minutes=round((time.perf_counter() - start) / 60, 2),
        grad_clip=recipe.train.grad_clip, resumed=resumed,
        train_loss=result.history[-1].get("train_loss") if result.history else None, train_device=device_name(),
    )
    return record, model


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    apply_threads(args.threads)
    rows_wanted = row_names(args.rows, ROWS)
    data, scored = cifar10_jpeg(args)
    baseline = jpeg_baseline("resnet32", data, args)
    cuda = args.device == "cuda" or (args.device == "auto" and torch.cuda.is_available())
    device = torch.device("cuda" if cuda else "cpu")
    train = {"epochs": 1 if args.quick else args.epochs, "lr": args.lr,
             **({"grad_clip": args.grad_clip} if args.grad_clip is not None else {}), "seed": args.seed, "device": args.device,
             "amp": cuda, "limit_batches": 3 if args.quick else args.limit_batches, "progress": sys.stdout.isatty()}
    calibration = None
    if args.allocation == "sensitivity":
        loader = sample_loader(data, args.calibration_images, seed=args.seed)
        calibration = next(iter(loader))[0]

    def top1(model: torch.nn.Module) -> float:
        return evaluate(model, scored, split="test", device=device)["top1"]

    cache = RowCache(Path(args.work + ("-quick" if args.quick else "")))
    base_profile = profile(baseline, runtimes=())
    cache.put("baseline", {}, baseline)
    records = [row_from_profile("baseline", base_profile, top1=top1(baseline))]
    print(f"{'baseline':>11}: top-1 {records[0]['top1']:.2f} %, {base_profile.params:,} params", flush=True)
    for name in rows_wanted:
        record = cache.get(name)
        if record is None:
            record, model = decomposed_row(name, baseline, data, args, train, calibration, top1, base_profile,
                                           cache.train_dir(name))
            cache.put(name, record, model)
        records.append(record)
        print(f"{name:>11}: top-1 {record['top1_decomposed']:.2f} % decomposed, "
              f"{record.get('top1_start', record.get('top1_bn')):.2f} % repaired, {record['top1']:.2f} % fine-tuned, {record['params']:,} params "
              f"({record['params_ratio']}x), {record['minutes']} min", flush=True)
    cache.time_rows(records, data.input_size, args.threads, quick=args.quick)

    budget = {"finetune_epochs": train["epochs"], "limit_batches": train["limit_batches"], "lr": args.lr,
              "reconstruct_images": args.reconstruct_images, "bn_batches": 0 if args.reconstruct_images else args.bn_batches,
              "recipe": "KD T=4, alpha 0.1 / beta 0.9, SGD nesterov, warm-up 0.1 epoch + cosine, batch 128, wd 1e-4",
              "mimic": args.mimic, "allocation": args.allocation, "test_images": len(scored.test)}
    write_results(NAME, records, args, argv, budget=budget,
                  notes="top1_decomposed: right after decomposition; top1_bn: after the BatchNorm "
                        "re-estimation, before any gradient step; top1: after fine-tuning. speedup_b1/b64: baseline "
                        "ONNX Runtime latency / row, all rows timed interleaved at the end.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
