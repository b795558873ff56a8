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
- `ours-full`: the same recipe with `protect_ends: false`: the block outputs are pruned through the
  option-A shortcuts too (about 4x fewer MACs), which Torch-Pruning cannot do on this model;
- `peer-glue`: the same protocol from the peers a user reaches for today: Torch-Pruning FPGM at
  0.5 with block outputs protected (it fails through option-A shortcuts otherwise), Hinton KD
  from ResNet-56 (T = 4, alpha = 0.3 labels, beta = 0.7 teacher) for the same epochs, ONNX Runtime
  static int8 (QDQ, per-channel).

Every row is deployed as ONNX and measured the same way at the end: `top1` is ONNX Runtime accuracy
on the 10,000 test images, `bytes` the ONNX file (FP32 rows: FP32 file; `ours`/`peer-glue`: int8),
latency is interleaved across all rows at batch 1 and 64 (`speedup_*` = baseline / row).

    python benchmarks/paper_table3.py --epochs 15          # the issue's protocol (hours on 2 CPU cores)
    python benchmarks/paper_table3.py --quick              # smoke run, a few minutes

Finished rows and the pipeline runs live in `--work` (default runs/paper_table3); a re-run resumes.
Writes docs/benchmarks/paper_table3.{json,md} (--quick: runs/benchmarks/)."""

from __future__ import annotations

import argparse
import copy
import dataclasses
import sys
import tempfile
import time
from pathlib import Path

import torch
import yaml

from _common import (
    RowCache,
    add_budget_args,
    add_io_args,
    apply_threads,
    row_names,
    write_results,
)
from _peers import torch_pruning_prune
from deepshrink.data import load_data, sample_loader, subset
from deepshrink.distillation import DistillConfig, distill
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
ROWS = ("baseline", "pf", "fpgm", "fpgm+kd", "ours", "peer-glue", "ours-full")


def parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--epochs", type=int, default=15, help="KD / fine-tuning epochs of every trained row (default 15)")
    p.add_argument("--qat-epochs", type=int, default=1, help="int8 QAT epochs of `ours` (default 1)")
    p.add_argument("--qat-batches", type=int, default=None, help="cap the QAT epoch at this many batches (default: whole)")
    p.add_argument("--probe-batches", type=int, default=150, help="batches of each eq. 7 probe run (default 150)")
    p.add_argument("--quick", action="store_true", help="smoke run: pipeline --smoke, 3 batches per row, 500 test images")
    p.add_argument("--work", default=str(ROOT / "runs" / NAME), help="pipeline run directory (resumed when present)")
    p.add_argument("--rows", default=",".join(ROWS), help="comma-separated subset of " + ",".join(ROWS))
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


class Table3:
    """The loaded data, models and budgets; one method per row, each returning (record, model or
    None, ONNX file or None). Finished rows are cached, so an interrupted run resumes."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args, shared = args, Path(args.shared)
        self.work = Path(args.work + ("-quick" if args.quick else ""))
        self.recipe = recipe_for(args)
        self.data = load_data(self.recipe["data"], seed=args.seed)
        self.baseline = self.zoo("resnet32", shared / "weights" / "cifar10-jpeg" / "resnet32.pth")
        self.teacher = self.zoo("resnet56", shared / "weights" / "cifar10-jpeg" / "resnet56.pth")
        self.train_config = TrainConfig(**{**step_options(self.recipe, "distill")["train"], "seed": args.seed,
                                           "limit_batches": 3 if args.quick else args.limit_batches,
                                           "epochs": 1 if args.quick else args.epochs, "progress": sys.stdout.isatty()})
        self.calibration = list(sample_loader(self.data, 64, seed=args.seed, limit_batches=2 if args.quick else 8))

    def zoo(self, name: str, weights: Path) -> torch.nn.Module:
        data = self.data
        model = create_model(name, num_classes=data.num_classes, input_size=data.input_size, mean=data.mean, std=data.std)
        return load_weights(model, weights).eval()

    def build(self, name: str):
        if name == "baseline":
            return {}, self.baseline, None
        if name in ("pf", "fpgm"):  # prune as the recipe does, then plain cross-entropy fine-tuning
            options = {**step_options(self.recipe, "prune"), "criterion": "l1" if name == "pf" else "fpgm"}
            model = train(prune(self.baseline, **options).model, self.data, self.train_config).model
            return {}, model.cpu().eval(), None
        if name in ("fpgm+kd", "ours", "ours-full"):
            return self.pipeline(name)
        return self.peer_glue()

    def pipeline(self, name: str):
        """The example recipe through `deepshrink compress`, as a user runs it; `ours-full` prunes
        the block outputs through the option-A shortcuts too (protect_ends off)."""
        recipe = copy.deepcopy(self.recipe)
        folder = "pipeline"
        if name == "ours-full":
            step_options(recipe, "prune")["protect_ends"] = False
            folder = "pipeline-full"
        report = compress(recipe, out=self.work / folder, smoke=self.args.quick, command=f"paper_table3 {recipe['name']}")
        steps = {s["kind"]: s for s in report["steps"]}
        step_dirs = self.work / folder / "steps"
        model = load(next(step_dirs.glob("*-distill")) / "model").eval()  # int8 keeps params and MACs
        kd = steps["distill"]["distill"]
        record = {"alpha": kd["alpha"], "beta": kd["beta"], "allocation": kd["allocation"],
                  "pipeline_seconds": {k: s["seconds"] for k, s in steps.items()}}
        onnx = None if name == "fpgm+kd" else next(step_dirs.glob("*-quantize")) / "model.int8.onnx"
        return record, model, onnx

    def peer_glue(self):
        """Torch-Pruning FPGM (intra-block) -> Hinton KD -> ONNX Runtime quantize_static."""
        pruned, record = torch_pruning_prune(self.baseline, "fpgm", self.calibration, full_ratio=0.5, intra_ratio=0.5)
        config = DistillConfig(temperature=4.0, weights=PEER_KD, train=self.train_config)
        model = distill(copy.deepcopy(pruned), self.teacher, self.data, config).model.cpu().eval()
        with tempfile.TemporaryDirectory() as tmp:
            onnx = ort_quantize_static(model, [b for b, _ in self.calibration], Path(tmp) / "peer.int8.onnx")
            return record, model, onnx.read_bytes()


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    apply_threads(args.threads)
    rows_wanted = row_names(args.rows, ROWS)
    bench = Table3(args)
    cache = RowCache(bench.work / "rows")
    records = []
    for name in ["baseline"] + [r for r in rows_wanted if r != "baseline"]:
        record = cache.get(name)
        if record is None:
            start = time.perf_counter()
            record, model, onnx = bench.build(name)
            record = {"params": count_params(model), "macs": macs(model)[0], "int8": onnx is not None,
                      "minutes": round((time.perf_counter() - start) / 60, 1), **record}
            if isinstance(onnx, bytes):  # a graph that lived in a temporary folder
                cache.onnx(name).write_bytes(onnx)
                onnx = cache.onnx(name)
            cache.put(name, record, model, onnx=onnx)
        records.append({"name": name, **record})
        print(f"{name}: ready ({record['minutes']} min)", flush=True)
    data = bench.data
    scored = dataclasses.replace(data, test=subset(data.test, 500, seed=args.seed)) if args.quick else data

    # One measurement for all: deployed accuracy, file bytes, interleaved ORT latency.
    cache.time_rows(records, data.input_size, args.threads, quick=args.quick)
    base_bytes = cache.onnx("baseline").stat().st_size
    rows = []
    for record in records:
        path = cache.onnx(record["name"])
        first = {k: record[k] for k in ("name", "params", "macs", "latency_ms", "speedup_b1", "speedup_b64")}
        rows.append({**first, "top1": evaluate_onnx(path, scored)["top1"], "bytes": path.stat().st_size,
                     "bytes_ratio": round(path.stat().st_size / base_bytes, 4),
                     **{k: v for k, v in record.items() if k not in first}})
        print(f"{record['name']:>10}: top-1 {rows[-1]['top1']:.2f} %, {rows[-1]['macs']:,} MACs, "
              f"{rows[-1]['bytes']:,} B, b64 x{rows[-1]['speedup_b64']}", flush=True)
    for row in rows:
        row["delta_top1"] = round(row["top1"] - rows[0]["top1"], 2)

    train_config = bench.train_config
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
