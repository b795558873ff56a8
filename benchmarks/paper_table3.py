"""Seed 001 Table 3 on the CIFAR-10 JPEG copy: ResNet-32 at 50 % filter pruning (issue 7).

Rows, every one measured here in the same run:

- `baseline`: `../shared/weights/cifar10-jpeg/resnet32.pth`;
- `pf`: L1-norm filter pruning (Li et al.) at ratio 0.5, same scope as ours, fine-tuned with
  cross-entropy for `--epochs` epochs (the distillation step's optimiser and schedule);
- `fpgm`: the same with FPGM;
- `fpgm+kd`: the recipe `examples/recipes/paper-resnet32-cifar10.yaml` run by the pipeline
  (`deepshrink compress`) up to its distillation step: FPGM 0.5 through the option-A shortcuts
  with the classifier whole, KD from ResNet-56 with eq. 7 weights (`weights: auto`), `--epochs`;
- `ours`: the same run's final int8 model (QAT fine-tune, exported as QDQ ONNX);
- `peer-glue`: the same protocol from the peers a user reaches for today: Torch-Pruning FPGM at
  0.5 with block outputs protected (it fails through option-A shortcuts otherwise), Hinton KD
  from ResNet-56 (T = 4, alpha = 0.3 labels, beta = 0.7 teacher) for the same epochs, ONNX Runtime
  static int8 (QDQ, per-channel).

Every row is deployed as ONNX and measured the same way at the end: `top1` is ONNX Runtime accuracy
on the 10,000 test images, `bytes` the ONNX file (FP32 rows: FP32 file; `ours`/`peer-glue`: int8),
latency is interleaved across all rows at batch 1 and 64 (`speedup_*` = baseline / row).

    python benchmarks/paper_table3.py --epochs 15          # the issue's protocol (hours on 2 CPU cores)
    python benchmarks/paper_table3.py --quick              # smoke run, a few minutes

The pipeline run lives in `--work` (default runs/paper_table3) and resumes when re-run.
Writes docs/benchmarks/paper_table3.{json,md} (--quick: runs/benchmarks/)."""

from __future__ import annotations

import argparse
import copy
import dataclasses
import sys
import time
from pathlib import Path

import torch
import yaml

from _common import add_budget_args, add_io_args, apply_threads, interleaved_latency, write_results
from _peers import torch_pruning_prune
from deepshrink.data import BatchLoader, load_data, subset
from deepshrink.distillation import DistillConfig, distill
from deepshrink.export import export_onnx
from deepshrink.metrics.counting import count_params, macs
from deepshrink.metrics.evaluation import evaluate_onnx
from deepshrink.models import create_model, load, load_weights
from deepshrink.pipeline import compress
from deepshrink.pruning import prune
from deepshrink.quantization import ort_quantize_static
from deepshrink.training import TrainConfig, train

ROOT = Path(__file__).resolve().parents[1]
NAME = "paper_table3"
RECIPE = ROOT / "examples" / "recipes" / "paper-resnet32-cifar10.yaml"
PAPER = {"baseline": 91.97, "pf": 92.54, "ours": 93.28, "bytes_fp32": 3_726_000, "bytes_ours": 1_842_000}
PEER_KD = {"alpha": 0.3, "beta": 0.7}


def parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--epochs", type=int, default=15, help="KD / fine-tuning epochs of every trained row (default 15)")
    p.add_argument("--qat-epochs", type=int, default=1, help="int8 QAT epochs of `ours` (default 1)")
    p.add_argument("--qat-batches", type=int, default=None, help="cap the QAT epoch at this many batches (default: whole)")
    p.add_argument("--probe-batches", type=int, default=150, help="batches of each eq. 7 probe run (default 150)")
    p.add_argument("--quick", action="store_true", help="smoke run: pipeline --smoke, 3 batches per row, 500 test images")
    p.add_argument("--work", default=str(ROOT / "runs" / NAME), help="pipeline run directory (resumed when present)")
    p.add_argument("--seed", type=int, default=0)
    add_io_args(p)
    add_budget_args(p)
    return p.parse_args(argv)


def recipe_for(args: argparse.Namespace) -> dict:
    """The example recipe with paths into --shared and this run's budget."""
    shared = Path(args.shared)
    recipe = yaml.safe_load(RECIPE.read_text())
    recipe["model"]["weights"] = str(shared / "weights" / "cifar10-jpeg" / "resnet32.pth")
    recipe["data"] = f"imagefolder:{shared / 'datasets' / 'cifar10-jpeg.tar.gz'}"
    recipe["seed"] = args.seed
    for step in recipe["steps"]:
        (kind, options), = step.items()
        if kind == "distill":
            options["teachers"][0]["weights"] = str(shared / "weights" / "cifar10-jpeg" / "resnet56.pth")
            options["train"].update(epochs=args.epochs, limit_batches=args.limit_batches)
            options["auto"]["limit_batches"] = args.probe_batches
        elif kind == "quantize":
            options["train"].update(epochs=args.qat_epochs, limit_batches=args.qat_batches)
        elif kind == "export":
            options["formats"] = ["onnx", "onnx_int8"]
    return recipe


def step_options(recipe: dict, kind: str) -> dict:
    return next(options for step in recipe["steps"] for k, options in step.items() if k == kind)


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    apply_threads(args.threads)
    shared = Path(args.shared)
    work = Path(args.work + ("-quick" if args.quick else ""))
    work.mkdir(parents=True, exist_ok=True)
    recipe = recipe_for(args)
    data = load_data(recipe["data"], seed=args.seed)
    scored = dataclasses.replace(data, test=subset(data.test, 500, seed=args.seed)) if args.quick else data

    def zoo(name: str, weights: Path) -> torch.nn.Module:
        model = create_model(name, num_classes=data.num_classes, input_size=data.input_size, mean=data.mean, std=data.std)
        return load_weights(model, weights).eval()

    baseline = zoo("resnet32", shared / "weights" / "cifar10-jpeg" / "resnet32.pth")
    teacher = zoo("resnet56", shared / "weights" / "cifar10-jpeg" / "resnet56.pth")
    prune_options = step_options(recipe, "prune")
    train_config = TrainConfig(**{**step_options(recipe, "distill")["train"], "seed": args.seed,
                                  "limit_batches": 3 if args.quick else args.limit_batches,
                                  "epochs": 1 if args.quick else args.epochs, "progress": sys.stdout.isatty()})
    calibration = list(BatchLoader(data.train, 64, train=False, augment=False, mean=data.mean, std=data.std,
                                   seed=args.seed, limit_batches=2 if args.quick else 8))
    minutes: dict[str, float] = {}
    models: dict[str, torch.nn.Module] = {"baseline": baseline}
    onnx: dict[str, Path] = {"baseline": export_onnx(baseline, work / "baseline.onnx")}
    extra: dict[str, dict] = {name: {} for name in ("baseline", "pf", "fpgm", "fpgm+kd", "ours", "peer-glue")}

    # pf and fpgm: prune as the recipe does, then plain cross-entropy fine-tuning.
    for name, criterion in (("pf", "l1"), ("fpgm", "fpgm")):
        start = time.perf_counter()
        pruned = prune(baseline, **{**prune_options, "criterion": criterion}).model
        models[name] = train(pruned, data, train_config).model.cpu().eval()
        onnx[name] = export_onnx(models[name], work / f"{name}.onnx")
        minutes[name] = (time.perf_counter() - start) / 60
        print(f"{name}: done in {minutes[name]:.1f} min", flush=True)

    # fpgm+kd and ours: the example recipe through the pipeline, as a user runs it.
    start = time.perf_counter()
    report = compress(recipe, out=work / "pipeline", smoke=args.quick, command=f"paper_table3 {recipe['name']}")
    steps = {s["kind"]: s for s in report["steps"]}
    pipeline_dir = work / "pipeline" / "steps"
    models["fpgm+kd"] = load(next(pipeline_dir.glob("*-distill")) / "model").eval()
    models["ours"] = models["fpgm+kd"]  # int8 does not change params or MACs
    onnx["fpgm+kd"] = export_onnx(models["fpgm+kd"], work / "fpgm+kd.onnx")
    onnx["ours"] = next(pipeline_dir.glob("*-quantize")) / "model.int8.onnx"
    minutes["fpgm+kd"] = minutes["ours"] = sum(s["seconds"] for s in report["steps"]) / 60
    kd = steps["distill"]["distill"]
    extra["fpgm+kd"] = {"alpha": kd["alpha"], "beta": kd["beta"], "allocation": kd["allocation"],
                        "pipeline_seconds": {k: s["seconds"] for k, s in steps.items()}}
    print(f"pipeline: done in {(time.perf_counter() - start) / 60:.1f} min", flush=True)

    # peer-glue: Torch-Pruning -> Hinton KD -> ONNX Runtime quantize_static.
    start = time.perf_counter()
    pruned, extra["peer-glue"] = torch_pruning_prune(baseline, "fpgm", calibration, full_ratio=0.5, intra_ratio=0.5)
    config = DistillConfig(temperature=4.0, weights=PEER_KD, train=train_config)
    models["peer-glue"] = distill(copy.deepcopy(pruned), teacher, data, config).model.cpu().eval()
    onnx["peer-glue"] = ort_quantize_static(models["peer-glue"], [b for b, _ in calibration], work / "peer-glue.int8.onnx")
    minutes["peer-glue"] = (time.perf_counter() - start) / 60
    print(f"peer-glue: done in {minutes['peer-glue']:.1f} min", flush=True)

    # One measurement for all: deployed accuracy, file bytes, interleaved ORT latency.
    budget_s = 1.0 if args.quick else 5.0
    latency = interleaved_latency(onnx, data.input_size, args.threads, budget_s=budget_s)
    rows = []
    for name, path in onnx.items():
        rows.append({
            "name": name, "top1": evaluate_onnx(path, scored)["top1"], "params": count_params(models[name]),
            "macs": macs(models[name])[0], "bytes": path.stat().st_size, **latency[name],
            "bytes_ratio": round(path.stat().st_size / onnx["baseline"].stat().st_size, 4),
            "int8": name in ("ours", "peer-glue"), "minutes": round(minutes.get(name, 0.0), 1), **extra[name],
        })
        print(f"{name:>10}: top-1 {rows[-1]['top1']:.2f} %, {rows[-1]['macs']:,} MACs, {rows[-1]['bytes']:,} B, "
              f"b64 x{rows[-1]['speedup_b64']}", flush=True)
    for row in rows:
        row["delta_top1"] = round(row["top1"] - rows[0]["top1"], 2)

    budget = {"epochs": train_config.epochs, "limit_batches": train_config.limit_batches,
              "qat_epochs": args.qat_epochs, "qat_batches": args.qat_batches,
              "probe_batches": args.probe_batches, "train": train_config.model_dump(mode="json"),
              "test_images": len(scored.test), "threads": torch.get_num_threads(), "quick": args.quick}
    notes = (f"Paper (original CIFAR-10, seed 001 Table 3): baseline {PAPER['baseline']} %, PF {PAPER['pf']} %, "
             f"ours {PAPER['ours']} %, 3,726 KB -> 1,842 KB. top1: ONNX Runtime on the deployed file. "
             "speedup: baseline ORT latency / row, measured interleaved in one session.")
    write_results(NAME, rows, args, argv, budget=budget, notes=notes)
    return 0


if __name__ == "__main__":
    sys.exit(main())
