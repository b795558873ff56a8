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
