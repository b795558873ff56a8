"""Sensitivity analysis: prune one coupled group at a time over a range of ratios, measure the
accuracy on the validation split, plot the curves and propose per-group ratios from them."""

from __future__ import annotations

import io
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch.nn as nn

from deepshrink.errors import ConfigError
from deepshrink.fileio import atomic_write_bytes
from deepshrink.pruning import primitives
from deepshrink.pruning.api import graph_for, scores_for
from deepshrink.pruning.config import PruneConfig, parse_config
from deepshrink.pruning.importance import Batches
from deepshrink.pruning.plan import apply_plan, make_plan
from deepshrink.pruning.policy import lowest_units
from deepshrink.pruning.trace import example_inputs_for

ScoreFn = Callable[[nn.Module], float]


@dataclass
class Sensitivity:
    baseline: float
    ratios: list[float]
    curves: dict[str, list[float]] = field(default_factory=dict)  # group -> accuracy at each ratio
    sizes: dict[str, int] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {"baseline": self.baseline, "ratios": self.ratios, "curves": self.curves, "sizes": self.sizes}


def validation_score(data: Any, *, limit_batches: int | None = 8, batch_size: int = 256) -> ScoreFn:
    """Top-1 on the validation split of a DataBundle (or data spec), on a few batches."""
    from deepshrink.metrics import evaluate

    return lambda model: evaluate(model, data, split="val", batch_size=batch_size, limit_batches=limit_batches)["top1"]


def sensitivity(model: nn.Module, score: ScoreFn, example_inputs=None, *, ratios: Sequence[float] = (0.25, 0.5, 0.75),
                config: PruneConfig | dict | None = None, data: Batches | None = None,
                groups: Sequence[str] | None = None, **options: Any) -> Sensitivity:
    """Accuracy (via `score(model)`) with only one group pruned, for each group and ratio.
    Rounding is off (every ratio is applied exactly) so the curves show the group itself."""
    cfg = parse_config(PruneConfig, config, **options)
    if not ratios or any(not 0 < r < 1 for r in ratios):
        raise ConfigError(f"sensitivity ratios must lie in (0, 1), got {list(ratios)}")
    inputs = example_inputs_for(model, example_inputs)
    graph = graph_for(model, inputs, cfg)
    scores = scores_for(graph, cfg, data)
    chosen = [graph.group(name) for name in groups] if groups else graph.groups
    result = Sensitivity(baseline=float(score(model)), ratios=sorted(float(r) for r in ratios))
    for group in chosen:
        if scores.get(group.name) is None:
            continue
        curve = []
        for ratio in result.ratios:
            keep = primitives.kept_count(group.size, ratio, 1)
            if keep == group.size:
                curve.append(result.baseline)
                continue
            plan = make_plan(graph, {group.name: lowest_units(scores[group.name], group.size - keep)})
            curve.append(float(score(apply_plan(model, plan))))
        result.curves[group.name] = curve
        result.sizes[group.name] = group.size
    return result


def propose_ratios(result: Sensitivity, max_drop: float = 1.0) -> dict[str, float]:
    """For each group, the largest measured ratio whose accuracy drop is at most `max_drop`
    (points), usable as `PruneConfig.ratios` (keys are group names)."""
    proposal = {}
    for name, curve in result.curves.items():
        ok = [r for r, acc in zip(result.ratios, curve) if result.baseline - acc <= max_drop]
        proposal[name] = max(ok, default=0.0)
    return proposal


def plot_sensitivity(result: Sensitivity, path: str | os.PathLike, *, title: str = "Pruning sensitivity") -> Path:
    """One accuracy-vs-ratio curve per group, with the unpruned accuracy as a dashed line."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for name, curve in result.curves.items():
        ax.plot(result.ratios, curve, marker="o", linewidth=1, label=name)
    ax.axhline(result.baseline, color="black", linestyle="--", linewidth=1, label="unpruned")
    ax.set_xlabel("fraction of the group's channels removed")
    ax.set_ylabel("validation top-1 (%)")
    ax.set_title(title)
    if len(result.curves) <= 12:
        ax.legend(fontsize=7)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=120)
    plt.close(fig)
    return atomic_write_bytes(path, buffer.getvalue())
