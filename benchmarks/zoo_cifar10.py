"""The CIFAR model zoo on the CIFAR-10 JPEG copy: accuracy, params, MACs, bytes, latency (issue 8).

Models with weights in `../shared/weights` are evaluated as they are (ResNet-20/32/56: the JPEG
baselines; ResNet-44: the original CIFAR-10 checkpoint); every other CIFAR model of the zoo is
trained from scratch with the same stated budget (`--epochs` x `--limit-batches` batches of 128,
SGD + Nesterov, one-cycle, crop + flip) — on 2 CPU cores that is a short budget, and the table says
so: those accuracies are what the budget buys, not what the architecture reaches.
Latency: eager PyTorch and ONNX Runtime at batch 1 and 64, same threads for every model.

    python benchmarks/zoo_cifar10.py --epochs 1 --limit-batches 300    # the CPU run of the table
    python benchmarks/zoo_cifar10.py --quick                           # smoke run

Trained models are kept in `--work` (default runs/zoo_cifar10/NAME) and reused when re-run.
Writes docs/benchmarks/zoo_cifar10.{json,md} (--quick: runs/benchmarks/)."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

from _common import add_budget_args, add_io_args, apply_threads, cifar10_jpeg, write_results
from deepshrink.metrics import evaluate, profile
from deepshrink.metrics.benchmark import row_from_profile
from deepshrink.models import MODELS, create_model, is_model_dir, list_models, load, load_weights, save_model
from deepshrink.training import TrainConfig, train

ROOT = Path(__file__).resolve().parents[1]
NAME = "zoo_cifar10"
PRETRAINED = {"resnet20": "cifar10-jpeg/resnet20.pth", "resnet32": "cifar10-jpeg/resnet32.pth",
              "resnet56": "cifar10-jpeg/resnet56.pth", "resnet44": "resnet-cifar10/resnet44-014dd654.th"}
# Peak learning rate per model where --lr does not train it. SqueezeNet has no BatchNorm: at 0.1 it
# stayed at chance (10.00 %, `--epochs 1 --limit-batches 150`), so it gets a tenth.
LR_SCALE = {"squeezenet": 0.1}


def cifar_models() -> list[str]:
    """Every zoo model with a 3x32x32 input (the CIFAR variants)."""
    return [name for name in list_models() if tuple(MODELS.meta(name).get("input_size", ())) == (3, 32, 32)]


def parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", default=None, help="comma-separated subset (default: every CIFAR model of the zoo)")
    p.add_argument("--epochs", type=int, default=1, help="training epochs of models without weights (default 1)")
    p.add_argument("--lr", type=float, default=0.1, help="peak learning rate (default 0.1)")
    p.add_argument("--quick", action="store_true", help="smoke run: 3 batches per model, 500 test images")
    p.add_argument("--work", default=str(ROOT / "runs" / NAME), help="trained models, reused when present")
    p.add_argument("--seed", type=int, default=0)
    add_io_args(p)
    add_budget_args(p)
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    apply_threads(args.threads)
    shared = Path(args.shared)
    data, scored = cifar10_jpeg(args)
    names = args.models.split(",") if args.models else cifar_models()
    config = TrainConfig(epochs=1 if args.quick else args.epochs, batch_size=128, optimizer="sgd", lr=args.lr,
                         nesterov=True, weight_decay=5e-4, schedule="onecycle", channels_last=True, seed=args.seed,
                         limit_batches=3 if args.quick else args.limit_batches, progress=sys.stdout.isatty())
    work = Path(args.work + ("-quick" if args.quick else ""))
    budget = {"train": config.model_dump(mode="json"), "images_per_model": config.epochs * 128
              * (config.limit_batches or -(-len(data.train) // 128)), "test_images": len(scored.test)}
    notes = ("top1 of models 'trained here' is what the stated short budget buys from scratch, not the "
             "architecture's reachable accuracy; the ResNets load the shared checkpoints.")
    rows = []
    for name in names:
        start = time.perf_counter()
        model = create_model(name, num_classes=data.num_classes, input_size=data.input_size,
                             mean=data.mean, std=data.std)
        if name in PRETRAINED:
            load_weights(model, shared / "weights" / PRETRAINED[name])
            source = f"weights: {PRETRAINED[name]}"
        elif is_model_dir(work / name):
            model, source = load(work / name), "trained here (reused)"
        else:
            torch.manual_seed(args.seed)
            recipe = config.model_copy(update={"lr": config.lr * LR_SCALE.get(name, 1.0)})
            model = train(model, data, recipe).model.cpu()
            save_model(model, work / name)
            source = "trained here"
        model.eval()
        measured = profile(model, batch_sizes=(1, 64))
        rows.append(row_from_profile(name, measured, top1=evaluate(model, scored)["top1"], source=source,
                                     lr=None if name in PRETRAINED else config.lr * LR_SCALE.get(name, 1.0),
                                     minutes=round((time.perf_counter() - start) / 60, 1)))
        print(f"{name:>16}: top-1 {rows[-1]['top1']:.2f} % ({source}), {measured.params:,} params, "
              f"{measured.macs:,} MACs, ort_b64 {measured.latency_ms.get('ort_b64')} ms", flush=True)
        # The table grows row by row: a run stopped part-way still leaves what it measured.
        write_results(NAME, rows, args, argv, budget={**budget, "models_done": f"{len(rows)}/{len(names)}"},
                      notes=notes)
    return 0


if __name__ == "__main__":
    sys.exit(main())
