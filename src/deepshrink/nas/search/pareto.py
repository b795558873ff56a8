"""The Pareto front of the evaluated candidates (higher proxy accuracy, lower cost) and its plot."""

from __future__ import annotations

import io
import os
from collections.abc import Sequence
from pathlib import Path

from deepshrink.fileio import atomic_write_bytes

AXIS_LABELS = {
    "macs": ("MACs (M)", 1e-6),
    "params": ("parameters (k)", 1e-3),
    "bytes": ("FP32 size (kB)", 1e-3),
    "latency": ("predicted latency (ms)", 1.0),
}


def pareto_front(candidates: Sequence[dict], cost: str) -> list[dict]:
    """Candidates no other candidate beats on both proxy top-1 (higher) and `cost` (lower),
    in order of increasing cost; ties on both keep the first."""
    front: list[dict] = []
    best = float("-inf")
    for c in sorted(candidates, key=lambda c: (c[cost], -c["top1"])):
        if c["top1"] > best:
            front.append(c)
            best = c["top1"]
    return front


def plot_pareto(candidates: Sequence[dict], front: Sequence[dict], chosen: dict, cost: str, limit: float,
                path: str | os.PathLike, *, title: str = "Search candidates") -> Path:
    """Proxy top-1 against cost: every candidate, the front, the budget line and the chosen point."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    label, unit = AXIS_LABELS[cost]
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for feasible, colour, name in ((True, "tab:blue", "within budget"), (False, "tab:gray", "over budget")):
        points = [c for c in candidates if c["feasible"] is feasible]
        if points:
            ax.scatter([c[cost] * unit for c in points], [c["top1"] for c in points], s=14, alpha=0.6,
                       color=colour, label=f"{name} ({len(points)})")
    ax.plot([c[cost] * unit for c in front], [c["top1"] for c in front], color="tab:orange", linewidth=1.2,
            marker="o", markersize=3, label="Pareto front")
    ax.axvline(limit * unit, color="tab:red", linestyle="--", linewidth=1, label="budget")
    ax.scatter([chosen[cost] * unit], [chosen["top1"]], marker="*", s=220, color="tab:red", edgecolor="black",
               zorder=5, label="chosen")
    ax.set_xlabel(label)
    ax.set_ylabel("proxy top-1 (%): BN recalibrated, few val batches")
    ax.set_title(title)
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=120)
    plt.close(fig)
    return atomic_write_bytes(path, buffer.getvalue())
