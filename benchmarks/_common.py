"""Command-line pieces every CIFAR benchmark script shares."""

from __future__ import annotations

import argparse
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def add_io_args(parser: argparse.ArgumentParser) -> None:
    """--shared (data and weights folder) and --out (where the JSON/MD tables go)."""
    parser.add_argument("--shared", default=str(ROOT.parent / "shared"), help="the shared data and weights folder")
    parser.add_argument("--out", default=None, help="output folder (default docs/benchmarks, --quick: runs/benchmarks)")


def row_names(text: str, known: tuple[str, ...]) -> list[str]:
    """The comma-separated --rows value, checked against the rows the script knows."""
    rows = [r.strip() for r in text.split(",") if r.strip()]
    unknown = sorted(set(rows) - set(known))
    if unknown:
        raise SystemExit(f"--rows: unknown {unknown}; choose from {', '.join(known)}")
    return rows


def add_budget_args(parser: argparse.ArgumentParser, *, threads: bool = True) -> None:
    """--limit-batches (cap each fine-tuning epoch: a stated CPU budget below whole epochs) and
    --threads (PyTorch and ONNX Runtime threads, so two benchmarks can share a machine)."""
    parser.add_argument("--limit-batches", type=int, default=None,
                        help="cap every fine-tuning epoch at this many batches (default: whole epochs)")
    if threads:
        parser.add_argument("--threads", type=int, default=None, help="PyTorch and ONNX Runtime threads (default: all cores)")


def apply_threads(threads: int | None) -> None:
    """Pin PyTorch's intra-op threads; metrics.profile then measures latency at the same count."""
    if threads is not None:
        import torch

        torch.set_num_threads(threads)


def write_results(name: str, rows: list[dict], args: argparse.Namespace, argv: list[str] | None, *,
                  budget: dict, notes: str | None = None) -> None:
    """Write NAME.json/.md (docs/benchmarks, or runs/benchmarks for --quick, or --out) with the
    command line that produced them."""
    import shlex
    import sys

    from deepshrink.metrics.benchmark import write_benchmark

    out = Path(args.out) if args.out else ROOT / ("runs/benchmarks" if args.quick else "docs/benchmarks")
    command = f"python benchmarks/{Path(sys.argv[0]).name} " + shlex.join(sys.argv[1:] if argv is None else argv)
    paths = write_benchmark(name, rows, command=command.strip(), budget=budget, out_dir=out, notes=notes)
    print("wrote", *paths, flush=True)
