"""Training throughput of `deepshrink.training.train` against a plain PyTorch loop.

Both train ResNet-32 on CIFAR-shaped data (random uint8 images, 10 classes) with SGD and
cross-entropy, batch 128, channels_last, the same thread count, and batches from the same
`BatchLoader` (random crop + flip on whole tensors). Each run does `--warmup` steps, then
`--steps` timed steps; images/s counts the timed steps only (data loading included). Runs
alternate plain / engine / engine / plain ... to spread machine noise evenly; the median is reported.
Goal: the engine within 5 % of the plain loop. Run it on a quiet machine:

    python benchmarks/engine_throughput.py                       # 60 steps x 3 rounds
    python benchmarks/engine_throughput.py --steps 10 --rounds 1 # quick check"""

from __future__ import annotations

import argparse
import statistics
import sys
import time

import torch
import torch.nn.functional as F

from deepshrink import create_model
from deepshrink.data import BatchLoader, DataBundle, ImageSet
from deepshrink.metrics.benchmark import write_benchmark
from deepshrink.training import TrainConfig, train

MEAN, STD = (0.4914, 0.4822, 0.4465), (0.247, 0.243, 0.261)


def cifar_shaped(n: int, seed: int = 0) -> DataBundle:
    gen = torch.Generator().manual_seed(seed)
    train_set = ImageSet(torch.randint(0, 256, (n, 3, 32, 32), generator=gen, dtype=torch.uint8),
                         torch.randint(0, 10, (n,), generator=gen))
    empty = ImageSet(train_set.images[:0], train_set.labels[:0])
    return DataBundle(train=train_set, val=empty, test=empty, classes=tuple(map(str, range(10))), num_classes=10,
                      input_size=(3, 32, 32), mean=MEAN, std=STD, name="cifar-shaped")


def fresh_model() -> torch.nn.Module:
    torch.manual_seed(0)
    return create_model("resnet32")


def plain_loop(data: DataBundle, args: argparse.Namespace) -> tuple[float, float]:
    """(timed images/s, wall seconds of the whole run) for the hand-written loop."""
    wall = time.perf_counter()
    model = fresh_model().to(memory_format=torch.channels_last).train()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=5e-4)
    loader = BatchLoader(data.train, args.batch_size, train=True, augment=True, mean=data.mean, std=data.std,
                         seed=0, limit_batches=args.warmup + args.steps, channels_last=True)
    loader.set_epoch(0)
    start = None
    for step, (images, labels) in enumerate(loader, 1):
        loss = F.cross_entropy(model(images), labels)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if step == args.warmup:
            start = time.perf_counter()
    timed = time.perf_counter() - start
    return args.steps * args.batch_size / timed, time.perf_counter() - wall


class _StepClock:
    """Times the engine's steps after warm-up, exactly as the plain loop is timed."""

    def __init__(self, warmup: int) -> None:
        self.warmup, self.start, self.end = warmup, None, None

    def on_step_end(self, state) -> None:
        if state.step == self.warmup:
            self.start = time.perf_counter()
        self.end = time.perf_counter()


def engine(data: DataBundle, args: argparse.Namespace) -> tuple[float, float]:
    wall = time.perf_counter()
    config = TrainConfig(epochs=1, batch_size=args.batch_size, lr=0.1, channels_last=True, augment=True,
                         limit_batches=args.warmup + args.steps, device="cpu", num_threads=args.threads,
                         progress=False, schedule="cosine")
    clock = _StepClock(args.warmup)
    train(fresh_model(), data, config, callbacks=[clock])
    return args.steps * args.batch_size / (clock.end - clock.start), time.perf_counter() - wall


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=60, help="timed steps per run")
    parser.add_argument("--warmup", type=int, default=5, help="untimed steps first")
    parser.add_argument("--rounds", type=int, default=3, help="each round runs plain and engine once")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--out-dir", default="docs/benchmarks")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    data = cifar_shaped(args.batch_size * (args.warmup + args.steps))

    runs: dict[str, list[tuple[float, float]]] = {"plain_loop": [], "engine": []}
    for index in range(args.rounds):
        order = ("plain_loop", "engine") if index % 2 == 0 else ("engine", "plain_loop")
        for name in order:
            runs[name].append((plain_loop if name == "plain_loop" else engine)(data, args))
            print(f"round {index + 1} {name}: {runs[name][-1][0]:.1f} img/s", file=sys.stderr)

    baseline = statistics.median(r[0] for r in runs["plain_loop"])
    rows = []
    for name, results in runs.items():
        rate = statistics.median(r[0] for r in results)
        rows.append({"name": name, "images_per_s": round(rate, 2), "relative": round(rate / baseline, 4),
                     "ms_per_step": round(1000 * args.batch_size / rate, 1),
                     "runs_images_per_s": [round(r[0], 2) for r in results],
                     "wall_s_median": round(statistics.median(r[1] for r in results), 2), "threads": args.threads})
    ratio = rows[1]["relative"]
    notes = (f"Engine / plain loop = {ratio:.3f} ({'within' if ratio >= 0.95 else 'NOT within'} the 5 % goal). "
             "images/s counts the timed steps only; wall_s_median is the whole run (model build, warm-up, setup).")
    command = "python benchmarks/engine_throughput.py " + " ".join(sys.argv[1:])
    budget = {"model": "resnet32", "batch_size": args.batch_size, "warmup_steps": args.warmup,
              "timed_steps": args.steps, "rounds": args.rounds, "threads": args.threads}
    paths = write_benchmark("engine_throughput", rows, command=command.strip(), budget=budget,
                            out_dir=args.out_dir, notes=notes)
    print(notes)
    print("wrote", *paths)


if __name__ == "__main__":
    main()
