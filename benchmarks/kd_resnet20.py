"""Knowledge distillation ResNet-56 -> ResNet-20 on the CIFAR-10 JPEG copy (issue 4).

The student starts from `../shared/weights/resnet-cifar10/resnet20-12fca82f.th` (trained on the
original CIFAR-10, about 81 % on the JPEG copy); the teacher is `../shared/weights/cifar10-jpeg/
resnet56.pth` (89.83 %). Every row fine-tunes the same student with the same recipe, seed and
number of epochs (SGD + Nesterov, one-cycle peak lr 0.02, batch 128, random crop + flip, weight
decay 1e-4: the recipe of the JPEG baselines); only the objective differs:

- `student`: cross-entropy alone (seed 001 eq. 2) - the baseline;
- `kd`: Hinton KD, T = 4, alpha = 0.1 on the labels, beta = 0.9 on the teacher (eq. 1);
- `fitnet`, `at`, `sp`, `rkd`, `fsp`, `pkt`, `crd` (contrastive): cross-entropy + that loss at its
  default taps. Its weight is set so that, on the first training batch, its gradient norm equals
  the cross-entropy's (the library defaults are from-scratch settings; FitNets' and FSP's are 8-9x the CE gradient
  here and wreck a pretrained student in a few steps). The weight is recorded in the row;
- `fsp-hint`, `fitnet-hint`: the papers' two-stage schemes (`hint_epochs`): the feature loss alone
  (same weight as its joint row), then cross-entropy alone; each stage gets half of every epoch's
  batches, so the row trains on as many batches as the others;
- `kd_auto`: KD with seed 001 eq. 7 weights, measured on a freshly initialised ResNet-20 probe
  (A = the teacher, B = the student as loaded), with I_A and I_B in the row;
- `kd_alpha_*`: the alpha sweep of seed 001 Table 2 (beta = 1 - alpha); alpha = 1 is the
  `student` row and alpha = 0.1 the `kd` row (identical runs, not repeated); plus a plot;
- `teacher`: ResNet-56 as loaded, for reference.

    python benchmarks/kd_resnet20.py --epochs 3          # what the lead runs (hours on 2 CPU cores)
    python benchmarks/kd_resnet20.py --quick             # smoke run: a few batches per run, minutes

Writes docs/benchmarks/kd_resnet20.{json,md} and kd_resnet20_sweep.png (--quick: runs/benchmarks/)."""

from __future__ import annotations

import argparse
import copy
import dataclasses
import sys
import time
from pathlib import Path

import torch

from deepshrink.data import BatchLoader, load_data, subset
from deepshrink.distillation import (
    DEFAULT_ALPHAS,
    DistillConfig,
    KDWeights,
    WeightAllocation,
    allocate_weights,
    build_objective,
    distill,
    plot_sweep,
)
from deepshrink.distillation.weighting import SweepPoint
from deepshrink.metrics import evaluate, profile
from deepshrink.metrics.benchmark import row_from_profile
from deepshrink.models import create_model, load_weights
from deepshrink.training import TrainConfig, train
from _common import add_budget_args, add_io_args, apply_threads, cached_record, write_results

ROOT = Path(__file__).resolve().parents[1]
METHODS = ("kd", "fitnet", "at", "sp", "rkd", "fsp", "pkt", "crd")
HINT_METHODS = ("fsp-hint", "fitnet-hint")  # two-stage: the feature loss first, then the labels
KD_WEIGHTS = {"alpha": 0.1, "beta": 0.9}
FEATURE_WEIGHTS = {"alpha": 1.0, "beta": 0.0}  # CE + the feature loss, no KD term (each method alone)


def parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--epochs", type=int, default=3, help="fine-tuning epochs of every row (default 3)")
    p.add_argument("--quick", action="store_true", help="smoke run: 1 epoch of 3 batches, 1,000 test images, 3 alphas")
    add_io_args(p)
    add_budget_args(p)
    p.add_argument("--methods", default=",".join(METHODS),
                   help="comma-separated subset of " + ",".join(METHODS + HINT_METHODS))
    p.add_argument("--no-sweep", action="store_true", help="skip the alpha sweep")
    p.add_argument("--no-auto", action="store_true", help="skip the eq. 7 weights")
    p.add_argument("--probe-epochs", type=int, default=1, help="budget of each eq. 7 probe run (default 1)")
    p.add_argument("--temperature", type=float, default=4.0)
    p.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--work", default=str(ROOT / "runs" / "kd_resnet20"), help="finished rows, reused when re-run")
    return p.parse_args(argv)


class Bench:
    """The loaded data and models plus the shared recipe; each method returns a trained copy."""

    def __init__(self, args: argparse.Namespace) -> None:
        shared = Path(args.shared)
        self.args = args
        data = load_data(f"imagefolder:{shared / 'datasets' / 'cifar10-jpeg.tar.gz'}", seed=args.seed)
        if args.quick:  # random (not leading, class-sorted) subsets keep the quick numbers meaningful
            val, test = subset(data.val, 512, args.seed), subset(data.test, 1000, args.seed)
            data = dataclasses.replace(data, val=val, test=test)
        self.data = data
        self.student = self._model("resnet20", shared / "weights" / "resnet-cifar10" / "resnet20-12fca82f.th")
        self.teacher = self._model("resnet56", shared / "weights" / "cifar10-jpeg" / "resnet56.pth").eval()
        cuda = args.device == "cuda" or (args.device == "auto" and torch.cuda.is_available())
        self.train = TrainConfig(
            epochs=1 if args.quick else args.epochs, batch_size=128, optimizer="sgd", lr=0.02, momentum=0.9,
            nesterov=True, weight_decay=1e-4, schedule="onecycle", channels_last=True, augment=True, seed=args.seed,
            limit_batches=3 if args.quick else args.limit_batches, device=args.device, amp=cuda, progress=sys.stdout.isatty(),
        )
        self.device = torch.device("cuda" if cuda else "cpu")
        self.work = Path(args.work + ("-quick" if args.quick else ""))

    def _model(self, name: str, weights: Path) -> torch.nn.Module:
        model = create_model(name, num_classes=self.data.num_classes, input_size=self.data.input_size)
        return load_weights(model, weights)

    def config(self, losses: list, weights) -> DistillConfig:
        return DistillConfig(losses=losses, temperature=self.args.temperature, weights=weights, train=self.train)

    def top1(self, model: torch.nn.Module) -> float:
        return evaluate(model, self.data, split="test", device=self.device)["top1"]

    def hint_config(self, method: str) -> tuple[DistillConfig, dict]:
        """Two-stage `method` (`hint_epochs`): each stage runs the budget's epochs on half of each
        epoch's batches, so the row trains on as many batches as the joint rows."""
        steps = self.train.limit_batches or len(self.data.train.labels) // self.train.batch_size
        half = self.train.model_copy(update={"limit_batches": max(1, steps // 2)})
        weight = self.balanced_weight(method)
        config = self.config([{"name": method, "weight": weight}], FEATURE_WEIGHTS).with_updates(
            hint_epochs=self.train.epochs, train=half)
        return config, {"loss_weight": weight, "hint_epochs": self.train.epochs, "batches_per_stage": half.limit_batches}

    def balanced_weight(self, method: str) -> float:
        """Weight giving the loss the cross-entropy's gradient norm on the first training batch.
        Seeded: the adapters it builds draw random weights, and without a seed the weight (and the
        row's own adapter, built next) would depend on which rows ran before, or were cached."""
        torch.manual_seed(self.args.seed)
        loader = BatchLoader(self.data.train, self.train.batch_size, train=True, augment=True, mean=self.data.mean,
                             std=self.data.std, seed=self.args.seed)
        loader.set_epoch(0)
        images, labels = next(iter(loader))
        norms = []
        for spec, alpha in (({"name": method, "weight": 0.0}, 1.0), ({"name": method, "weight": 1.0}, 0.0)):
            student = copy.deepcopy(self.student).train()
            weights = {"alpha": alpha, "beta": 1.0 - alpha}  # beta is unused: there is no kd term
            config = DistillConfig(losses=[spec], weights=weights, train=self.train)
            objective = build_objective(student, [self.teacher], (1.0,), config, input_size=self.data.input_size)
            objective(student, images, labels)[0].backward()
            objective.close()
            norms.append(torch.cat([p.grad.flatten() for p in student.parameters() if p.grad is not None]).norm())
        return float(norms[0] / norms[1])


def run_row(bench: Bench, name: str, fit) -> dict:
    """Train one copy of the student with `fit(model) -> history`, score it, print one line; a
    finished row is reused from --work."""

    def compute() -> dict:
        start = time.perf_counter()
        model = copy.deepcopy(bench.student)
        history = fit(model)
        return {"name": name, "top1": bench.top1(model), "minutes": round((time.perf_counter() - start) / 60, 2),
                "train_loss": history[-1].get("train_loss") if history else None,
                "val_top1": history[-1].get("val_top1") if history else None}

    record = cached_record(bench.work, name, compute)
    print(f"{name:>14}: top-1 {record['top1']:.2f} % ({record['minutes']} min)", flush=True)
    return record


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    apply_threads(args.threads)
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    unknown = sorted(set(methods) - set(METHODS + HINT_METHODS))
    if unknown:
        raise SystemExit(f"--methods: unknown {unknown}; choose from {', '.join(METHODS + HINT_METHODS)}")
    bench = Bench(args)
    records = [run_row(bench, "student", lambda m: train(m, bench.data, bench.train).history)]
    by_weights = {(1.0, 0.0): records[0]}  # the sweep's alpha = 1 is plain cross-entropy
    for method in methods:
        if method in HINT_METHODS:
            config, extra = bench.hint_config(method.removesuffix("-hint"))
            record = run_row(bench, method, lambda m, c=config: distill(m, bench.teacher, bench.data, c).history)
            records.append({**record, "method": method, **extra, **FEATURE_WEIGHTS})
            continue
        weights = KD_WEIGHTS if method == "kd" else FEATURE_WEIGHTS
        extra = {"temperature": args.temperature} if method == "kd" else {"loss_weight": bench.balanced_weight(method)}
        spec = method if method == "kd" else {"name": method, "weight": extra["loss_weight"]}
        config = bench.config([spec], weights)
        record = run_row(bench, method, lambda m, c=config: distill(m, bench.teacher, bench.data, c).history)
        records.append({**record, "method": method, **extra, **weights})
        if method == "kd":
            by_weights[(KD_WEIGHTS["alpha"], KD_WEIGHTS["beta"])] = record

    allocation = None
    if not args.no_auto:
        probe = bench.config(["kd"], KD_WEIGHTS).with_updates(
            auto={"epochs": args.probe_epochs, "limit_batches": 3 if args.quick else args.limit_batches}
        )
        found = cached_record(bench.work, "allocation", lambda: allocate_weights(
            bench.teacher, bench.student, bench.data, probe, template=bench.student).as_dict())
        allocation = WeightAllocation(**{**found, "weights": KDWeights(**found["weights"])})
        weights = allocation.weights.model_dump()
        config = bench.config(["kd"], weights)
        record = run_row(bench, "kd_auto", lambda m: distill(m, bench.teacher, bench.data, config).history)
        records.append({**record, "method": "kd", "temperature": args.temperature, **weights,
                        "I_A": allocation.improvement_teacher, "I_B": allocation.improvement_second,
                        "probe_top1": {"alone": allocation.baseline_top1, "from_A": allocation.teacher_top1,
                                       "from_B": allocation.second_top1}, "rule": allocation.rule})

    sweep: list[SweepPoint] = []
    if not args.no_sweep:
        for alpha in ((1.0, 0.5, 0.1) if args.quick else DEFAULT_ALPHAS):
            key = (alpha, round(1.0 - alpha, 10))
            if key not in by_weights:
                config = bench.config(["kd"], {"alpha": key[0], "beta": key[1]})
                by_weights[key] = run_row(bench, f"kd_alpha_{alpha:.1f}",
                                          lambda m, c=config: distill(m, bench.teacher, bench.data, c).history)
            done = by_weights[key]
            sweep.append(SweepPoint(key[0], key[1], done["top1"], done["train_loss"]))
            row = {**done, "name": f"kd_alpha_{alpha:.1f}", "method": "kd", "alpha": key[0], "beta": key[1]}
            if done["name"] != row["name"]:
                row["same_run_as"] = done["name"]
            records.append(row)

    out = Path(args.out or (ROOT / ("runs/benchmarks" if args.quick else "docs/benchmarks")))
    name = "kd_resnet20"
    if sweep:
        plot_sweep(sweep, out / f"{name}_sweep.png", allocation=allocation,
                   title="ResNet-56 -> ResNet-20, CIFAR-10 JPEG: top-1 against alpha")

    # Every student row has the ResNet-20 architecture: measure it once (sizes and latency do not
    # depend on the weight values); the teacher is measured on its own.
    runtimes = ("eager",) if args.quick else ("eager", "ort")
    student_profile = profile(bench.student, batch_sizes=(1, 64), runtimes=runtimes)
    rows = [row_from_profile(r.pop("name"), student_profile, r.pop("top1"), **r) for r in records]
    teacher_top1 = bench.top1(bench.teacher)
    rows.append(row_from_profile("teacher", profile(bench.teacher, batch_sizes=(1, 64), runtimes=runtimes),
                                 teacher_top1, method="resnet56 as loaded"))
    budget = {**bench.train.model_dump(mode="json"), "test_images": len(bench.data.test),
              "probe_epochs": args.probe_epochs, "temperature": args.temperature}
    notes = (
        "Every row fine-tunes ResNet-20 from resnet20-12fca82f.th with the same recipe and epochs; top1 is on the "
        "test split (never used for choices), val_top1 on the held-out 10 % of train. Feature-loss weights "
        "(loss_weight) match the cross-entropy gradient norm on the first training batch. Sizes and "
        "latency are measured once for the ResNet-20 architecture and once for the teacher. "
        "kd_auto: seed 001 eq. 7, beta (teacher) = I_A / (I_A + I_B), alpha (labels) = I_B / (I_A + I_B)."
    )
    write_results(name, rows, args, argv, budget=budget, notes=notes)
    return 0


if __name__ == "__main__":
    sys.exit(main())
