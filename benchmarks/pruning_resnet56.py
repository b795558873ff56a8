"""Structured pruning of ResNet-56 on the CIFAR-10 JPEG copy at about 2x fewer MACs (issue 3).

The baseline is `../shared/weights/cifar10-jpeg/resnet56.pth`. Our rows (fpgm, l1, taylor, hrank,
bn; fpgm-sens: FPGM with per-group ratios allocated from measured sensitivity curves; fpgm-lat: FPGM
with the per-group ratios `deepshrink.search` finds under 1/`--speedup-b64` of the baseline's ONNX Runtime
latency at batch 64 and, as a further limit, the MACs budget; fpgm-stages: FPGM with one ratio per
stage, `--stage-ratios`, for the inner channels of each stage's blocks; fpgm-depth: every inner
group halved as `--ratio 0.5`, then the `--drop-blocks` residual branches of the first stage whose
replacement by their mean output loses least are dropped, `deepshrink.pruning.drop_branches`;
fpgm-depth-lat: the same, the branches ranked by that loss per millisecond ONNX Runtime saves at
batch 64, in any stage; with `--round-to 16` a 16-channel group is too small to halve, so the first
stage keeps its width: ONNX Runtime's AVX-512 float convolutions pad channels to blocks of 16, and
8 channels run as slowly as 16 there) prune it with `deepshrink.prune` to a MACs budget (default: keep 50 %; `--ratio 0.5` instead
prunes every group by half, exactly the peer's architecture) with verified surgery,
inside the blocks (`--scope intra`, the default: one-shot pruning of the residual stream costs far
more accuracy before fine-tuning) or through the option-A shortcuts too (`--scope all`, which
Torch-Pruning cannot do); then each is fine-tuned for the same budget: `--epochs` epochs of cross-entropy, SGD +
Nesterov, cosine from `--lr`, batch 128, weight decay 1e-4, random crop + flip, channels_last
(`--kd`: the same with Hinton KD from the unpruned baseline, T 4, 0.1 labels + 0.9 teacher).
Rows `tp-<criterion>` run Torch-Pruning (optional extra `pip install torch-pruning`) with the
same criterion and fine-tuning: its full pruning of this model fails on the zero-padding
shortcuts (the error is recorded in `tp_full_error`), so it runs its workaround, the intra-block
channels only, at ratio 0.5 (= 2x fewer MACs). `--aggregate group` scores our l1/l2/fpgm
channels over the whole coupled group (producer filters + consumer inputs) as Torch-Pruning does. Every row: top-1 after fine-tuning and right after
pruning, the change vs the baseline, params, MACs, ONNX Runtime latency at batch 1 and 64 and
their speed-up vs the baseline.

    python benchmarks/pruning_resnet56.py --epochs 3     # what the lead runs (hours on 2 CPU cores)
    python benchmarks/pruning_resnet56.py --quick        # smoke run: a few batches per row, minutes

Writes docs/benchmarks/pruning_resnet56.{json,md} (--quick: runs/benchmarks/)."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

from _common import (
    QUICK_SEARCH_LATENCY,
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
from _peers import torch_pruning_prune
from deepshrink.data import sample_loader
from deepshrink.distillation import RECOVERY_KD, DistillConfig, distill
from deepshrink.metrics import evaluate, profile
from deepshrink.metrics.benchmark import row_from_profile
from deepshrink.nas.search import SearchConfig, search
from deepshrink.nas.search.config import DEFAULT_RATIOS
from deepshrink.pruning import PruneConfig, drop_branches, prune, sensitivity_config
from deepshrink.pruning.config import round_to_from_text
from deepshrink.training import CHECKPOINT_FILE, TrainConfig, train

ROOT = Path(__file__).resolve().parents[1]
NAME = "pruning_resnet56"
OURS = {"fpgm": "fpgm", "l1": "l1", "taylor": "taylor", "hrank": "hrank", "bn": "bn_scale", "fpgm-sens": "fpgm",
        "fpgm-lat": "fpgm", "fpgm-stages": "fpgm", "fpgm-depth": "fpgm", "fpgm-depth-lat": "fpgm"}
SENSITIVITY_ROWS = {"fpgm-sens"}  # per-group ratios from measured sensitivity curves, within the same MACs budget
SEARCH_ROWS = {"fpgm-lat"}  # per-group ratios searched under a batch-64 latency target and the MACs budget
# One ratio per stage: the per-convolution ORT profile (pruning_latency_layers) shows the last stage's
# convolutions speed up in proportion to the channels removed, the first stage's conv1 hardly at all.
STAGE_ROWS = {"fpgm-stages"}
# Every inner group halved, then whole first-stage branches dropped: MLAS runs that stage's
# 8-channel convolutions slowly, so removing a block there buys more time than thinning elsewhere.
# fpgm-depth-lat: the branches chosen by energy lost per millisecond ONNX Runtime saves, in any stage.
DEPTH_ROWS = {"fpgm-depth": {"within": r"^layer1\."}, "fpgm-depth-lat": {"rank_by": "latency"}}
TP_ROWS = ("tp-fpgm", "tp-l1", "tp-taylor", "tp-bn")
ROWS = (*OURS, *TP_ROWS)
FULL_RATIO = 1 - 0.5 ** 0.5  # every layer pruned: MACs scale as (1 - r)^2, so this is about 2x fewer


def parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--epochs", type=int, default=3, help="fine-tuning epochs of every row (default 3)")
    p.add_argument("--quick", action="store_true", help="smoke run: 1 epoch of 3 batches, 500 test images")
    p.add_argument("--rows", default=",".join(ROWS), help="comma-separated subset of " + ",".join(ROWS))
    p.add_argument("--macs-keep", type=float, default=0.5, help="fraction of the baseline's MACs to keep (0.5 = 2x)")
    p.add_argument("--scope", choices=["all", "intra"], default="intra",
                   help="our rows: prune block outputs through the shortcuts too (all) or inside blocks only")
    p.add_argument("--ratio", type=float, default=None,
                   help="our rows: this ratio in every group (Torch-Pruning's setting: equal MACs) instead of "
                        "solving --macs-keep, whose rounding removes 8 more channels somewhere")
    p.add_argument("--stage-ratios", default="0.5,0.5,0.625",
                   help="fpgm-stages: the inner-channel ratio of layer1,layer2,layer3 (default 0.5,0.5,0.625)")
    p.add_argument("--drop-blocks", type=int, default=2,
                   help="fpgm-depth: residual branches of the first stage dropped after halving (default 2)")
    p.add_argument("--round-to", type=round_to_arg, default=8,
                   help="our rows: kept channels per group in multiples of this, or 'auto' (ONNX Runtime's float "
                        "channel block on this CPU: 16 with AVX-512, else 8); rows of another value need their own --work")
    p.add_argument("--aggregate", choices=["producers", "group"], default="producers",
                   help="our l1/fpgm rows score the filters only or the whole coupled group (as Torch-Pruning does)")
    p.add_argument("--lr", type=float, default=0.01, help="peak fine-tuning learning rate (default 0.01)")
    p.add_argument("--kd", action="store_true",
                   help="fine-tune with Hinton KD from the unpruned baseline (T 4, 0.1 labels + 0.9 teacher) "
                        "instead of cross-entropy alone; same optimiser, schedule and epochs")
    p.add_argument("--mimic", type=float, default=0.0,
                   help="with --kd: weight of stage-output feature mimicking (the `mimic` loss) beside KD (default 0: off)")
    p.add_argument("--speedup-b64", type=float, default=1.6,
                   help="fpgm-lat: the batch-64 ONNX Runtime speed-up its searched ratios must reach (default 1.6x)")
    p.add_argument("--calibration-batches", type=int, default=4, help="training batches of 64 for taylor and hrank")
    p.add_argument("--sensitivity-batches", type=int, default=4,
                   help="*-sens rows: validation batches of 256 scored per point of each group's curve")
    add_io_args(p)
    add_budget_args(p)
    p.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--work", default=str(ROOT / "runs" / NAME), help="finished rows (JSON + ONNX), resumed when present")
    return p.parse_args(argv)



def searched_config(baseline, args, data, out_dir: Path) -> tuple[PruneConfig, dict]:
    """The per-group ratios of the most accurate candidate (BatchNorm-recalibrated proxy) whose
    measured batch-64 latency and MACs meet both targets; the search resumes from `out_dir`."""
    start = time.perf_counter()
    quick = {"population": 4, "generations": 1, "proxy": {"calibration_batches": 1, "val_batches": 1}} if args.quick else {}
    # one ORT thread whatever --threads trains with: the tables' timing, and the saved search resumes
    latency = {"batch_size": 64, "threads": 1, **(QUICK_SEARCH_LATENCY if args.quick else {})}
    found = search(baseline, data, SearchConfig(budget=f"latency:{args.speedup_b64}x", limits=[f"macs:{args.macs_keep}"],
                                                criterion="fpgm", ratios=(*DEFAULT_RATIOS, 0.9), progress=False,
                                                latency=latency, **quick), out_dir=out_dir)
    return found.prune_config(), {
        "search_minutes": round((time.perf_counter() - start) / 60, 2), "candidates": len(found.candidates),
        "proxy_top1": found.chosen["top1"], "meets_target_in_search": found.chosen["meets_target"],
        "group_ratios": {k: round(v, 3) for k, v in found.plan.items()}}


def round_to_arg(text: str) -> int:
    try:
        return PruneConfig(round_to=round_to_from_text(text)).round_to
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer or 'auto', got {text!r}") from None


def stage_ratios(text: str) -> dict[str, float]:
    """"0.5,0.5,0.625" -> {layer1 groups: 0.5, layer2 groups: 0.5, layer3 groups: 0.625}."""
    try:
        ratios = [float(r) for r in text.split(",")]
    except ValueError:
        raise SystemExit(f"--stage-ratios: expected three numbers like 0.5,0.5,0.625, got {text!r}") from None
    if len(ratios) != 3 or not all(0 <= r < 1 for r in ratios):
        raise SystemExit(f"--stage-ratios: expected three ratios in [0, 1), one per stage, got {text!r}")
    return {rf"layer{stage}\..*": r for stage, r in enumerate(ratios, 1)}


def prune_ours(baseline, name: str, args, data, calibration, run_dir: Path) -> tuple[torch.nn.Module, dict]:
    scope = {"protect_ends": False} if args.scope == "all" else {"protect_ends": True}
    target = {"ratio": args.ratio} if args.ratio is not None else {"budget": {"metric": "macs", "keep": args.macs_keep}}
    config = PruneConfig(criterion=OURS[name], aggregate=args.aggregate, round_to=args.round_to, **target, **scope)
    extra = {}
    if name in SENSITIVITY_ROWS | SEARCH_ROWS and config.budget is None:
        raise SystemExit(f"{name}: its per-group ratios are chosen within the MACs budget (--macs-keep), not --ratio")
    if name in SENSITIVITY_ROWS:
        start = time.perf_counter()
        curves, config = sensitivity_config(baseline, data, config, calibration=calibration,
                                            batches=1 if args.quick else args.sensitivity_batches)
        extra = {"sensitivity_minutes": round((time.perf_counter() - start) / 60, 2),
                 "group_ratios": {k: round(v, 3) for k, v in config.ratios.items()}}
    elif name in SEARCH_ROWS:
        config, extra = searched_config(baseline, args, data, run_dir.with_suffix(".search"))
    elif name in DEPTH_ROWS:
        config = config.model_copy(update={"ratio": 0.5, "budget": None})
    elif name in STAGE_ROWS:
        config = config.model_copy(update={"ratio": 0.0, "budget": None, "ratios": stage_ratios(args.stage_ratios)})
        extra = {"stage_ratios": args.stage_ratios}
    result = prune(baseline, config=config, data=calibration)
    model = result.model
    if name in DEPTH_ROWS:
        dropped = drop_branches(model, count=args.drop_blocks, data=calibration, **DEPTH_ROWS[name])
        saved = dropped.report.get("saved_ms", {})
        model, extra = dropped.model, {"dropped_branches": dropped.report["dropped"],
                                       "depth_rel_error": dropped.report["verified_rel_error"],
                                       **({"saved_ms_b64": {n: round(saved[n], 2) for n in dropped.report["dropped"]}} if saved else {})}
    aggregate = getattr(config.aggregate, "value", config.aggregate)  # the search scores its own way
    return model, {"ratio": round(result.report["ratio"], 4), "aggregate": aggregate, "round_to": config.round_to,
                          "verified_rel_error": result.report["verification"]["max_relative_error"], **extra}


def finetuned_row(name: str, baseline, args, data, calibration, config, top1, base_profile, base_top1,
                  run_dir: Path) -> dict:
    """Prune with our criterion or Torch-Pruning's, fine-tune and score; the record carries the model.
    The fine-tuning checkpoints every epoch in `run_dir`, so a killed run resumes mid-row."""
    start = time.perf_counter()
    if name in OURS:
        model, extra = prune_ours(baseline, name, args, data, calibration, run_dir)
    else:
        model, extra = torch_pruning_prune(baseline, name.split("-", 1)[1], calibration, full_ratio=FULL_RATIO)
    pruned_top1 = top1(model)
    resumed = (run_dir / CHECKPOINT_FILE).is_file()
    if args.kd:  # the teacher is the unpruned model: the pruned one starts close to its function
        losses = [*RECOVERY_KD["losses"], *([{"name": "mimic", "weight": args.mimic}] if args.mimic else [])]
        recipe = DistillConfig(**{**RECOVERY_KD, "losses": losses}, train=config)
        result = distill(model, baseline, data, recipe, out_dir=run_dir, resume=True)
    else:
        result = train(model, data, config, out_dir=run_dir, resume=True)
    model = result.model.to("cpu").eval()
    measured = profile(model, runtimes=())
    after = top1(model)
    return row_from_profile(
        name, measured, top1=after, method=name, top1_pruned=pruned_top1, delta_top1=round(after - base_top1, 2),
        macs_ratio=round(base_profile.macs / measured.macs, 3), params_ratio=round(base_profile.params / measured.params, 3),
        minutes=round((time.perf_counter() - start) / 60, 2), resumed=resumed,
        train_loss=result.history[-1].get("train_loss") if result.history else None, train_device=device_name(), **extra,
    ) | {"model": model}


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    if args.mimic and not args.kd:
        raise SystemExit("--mimic needs --kd (it is a term of the distillation loss)")
    apply_threads(args.threads)
    rows_wanted = row_names(args.rows, ROWS)
    data, scored = cifar10_jpeg(args)
    baseline = jpeg_baseline("resnet56", data, args)
    cuda = args.device == "cuda" or (args.device == "auto" and torch.cuda.is_available())
    device = torch.device("cuda" if cuda else "cpu")
    config = TrainConfig(epochs=1 if args.quick else args.epochs, batch_size=128, lr=args.lr, nesterov=True,
                         weight_decay=1e-4, schedule="cosine", channels_last=True, seed=args.seed,
                         device=args.device, amp=cuda, limit_batches=3 if args.quick else args.limit_batches,
                         progress=sys.stdout.isatty())
    loader = sample_loader(data, 64, seed=args.seed, limit_batches=args.calibration_batches)
    calibration = list(loader)

    def top1(model: torch.nn.Module) -> float:
        return evaluate(model, scored, split="test", device=device)["top1"]

    cache = RowCache(Path(args.work + ("-quick" if args.quick else "")))
    base_profile = profile(baseline, runtimes=())
    base_top1 = top1(baseline)
    cache.put("baseline", {}, baseline)
    records = [row_from_profile("baseline", base_profile, top1=base_top1, method="unpruned")]
    print(f"{'baseline':>10}: top-1 {base_top1:.2f} %, {base_profile.macs:,} MACs", flush=True)
    for name in rows_wanted:
        record = cache.get(name)
        if record is not None and name in OURS and record.get("round_to", 8) != args.round_to:  # rows before the flag: 8
            raise SystemExit(f"{cache.folder / name}.json: round_to: the cached row kept multiples of "
                             f"{record.get('round_to', 8)}, this run asks for {args.round_to}; use another --work")
        if record is None:
            record = finetuned_row(name, baseline, args, data, calibration, config, top1, base_profile, base_top1,
                                   cache.train_dir(name))
            cache.put(name, record, record.pop("model"))
        records.append(record)
        print(f"{name:>10}: top-1 {record['top1_pruned']:.2f} % -> {record['top1']:.2f} % after fine-tuning, "
              f"{record['macs_ratio']}x fewer MACs, {record['minutes']} min", flush=True)

    cache.time_rows(records, data.input_size, args.threads, quick=args.quick)

    budget = {"finetune_epochs": config.epochs, "limit_batches": config.limit_batches, "lr": args.lr,
              "recipe": ("KD from the baseline, T 4, 0.1 labels + 0.9 teacher" if args.kd else "cross-entropy")
              + (f" + stage-output mimic x{args.mimic}" if args.kd and args.mimic else "")
              + ", SGD nesterov, cosine, batch 128, wd 1e-4, crop + flip",
              "macs_keep": args.macs_keep if args.ratio is None else None, "ratio": args.ratio, "scope": args.scope, "aggregate": args.aggregate, "round_to": args.round_to, "test_images": len(scored.test),
              "calibration_images": 64 * args.calibration_batches}
    notes = ("top1_pruned: accuracy right after pruning, before fine-tuning. speedup_b1/b64: baseline latency / "
             "row latency, all rows timed interleaved in one ONNX Runtime session at the end. tp-*: Torch-Pruning; "
             "tp_full_error is what its full pruning of the option-A shortcuts raised, the row itself is its "
             "intra-block workaround.")
    write_results(NAME, records, args, argv, budget=budget, notes=notes)
    return 0


if __name__ == "__main__":
    sys.exit(main())
