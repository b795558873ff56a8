"""Sensitivity analysis: prune one coupled group at a time over a range of ratios, measure the
accuracy on the validation split, plot the curves and propose per-group ratios from them."""

from __future__ import annotations

import io
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch.nn as nn

from deepshrink.errors import BudgetError, ConfigError
from deepshrink.fileio import atomic_write_bytes, read_json, write_json
from deepshrink.pruning import primitives
from deepshrink.pruning.api import graph_for, scores_for
from deepshrink.pruning.budget import BudgetMeter
from deepshrink.pruning.config import Budget, Policy, PruneConfig, parse_config
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
                groups: Sequence[str] | None = None, state: str | os.PathLike | None = None,
                state_key: dict[str, Any] | None = None, **options: Any) -> Sensitivity:
    """Accuracy (via `score(model)`) with only one group pruned, for each group and ratio.
    Rounding is off (every ratio is applied exactly) so the curves show the group itself.

    With `state` (a JSON path) the curves measured so far are saved after every group, and a later
    call with the same settings (ratios, groups, pruning config and the caller's `state_key`, e.g.
    the data and batches `score` uses) continues from them; other settings start afresh."""
    cfg = parse_config(PruneConfig, config, **options)
    if not ratios or any(not 0 < r < 1 for r in ratios):
        raise ConfigError(f"sensitivity ratios must lie in (0, 1), got {list(ratios)}")
    inputs = example_inputs_for(model, example_inputs)
    graph = graph_for(model, inputs, cfg)
    scores = scores_for(graph, cfg, data)
    chosen = [graph.group(name) for name in groups] if groups else graph.groups
    ordered = sorted(float(r) for r in ratios)
    settings = {"ratios": ordered, "groups": {g.name: g.size for g in chosen}, "key": state_key or {},
                "config": cfg.model_dump(mode="json", exclude={"budget", "ratio", "ratios", "policy", "schedule"})}
    result = _resumed(state, settings) or Sensitivity(baseline=float(score(model)), ratios=ordered)
    with _progress() as progress:
        task = progress.add_task("sensitivity", total=len(chosen) * len(ordered))
        for group in chosen:
            if scores.get(group.name) is None or group.name in result.curves:
                progress.advance(task, len(ordered))
                continue
            curve = []
            for ratio in ordered:
                keep = primitives.kept_count(group.size, ratio, 1)
                if keep == group.size:
                    curve.append(result.baseline)
                else:
                    plan = make_plan(graph, {group.name: lowest_units(scores[group.name], group.size - keep)})
                    curve.append(float(score(apply_plan(model, plan))))
                progress.update(task, advance=1, description=f"sensitivity {group.name}")
            result.curves[group.name] = curve
            result.sizes[group.name] = group.size
            if state is not None:
                write_json(state, {"settings": settings, **result.as_dict()})
    return result


def _resumed(state: str | os.PathLike | None, settings: dict) -> Sensitivity | None:
    """The curves saved in `state` by a call with the same settings, else None."""
    if state is None or not Path(state).is_file():
        return None
    saved = read_json(state)
    if not isinstance(saved, dict) or saved.get("settings") != settings:
        return None
    return Sensitivity(baseline=saved["baseline"], ratios=saved["ratios"], curves=saved["curves"], sizes=saved["sizes"])


def _progress():
    """One bar over every (group, ratio) pair, with an ETA; drawn on a terminal only (stderr)."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    console = Console(stderr=True)
    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                    console=console, transient=True, disable=not console.is_terminal)


def propose_ratios(result: Sensitivity, max_drop: float = 1.0) -> dict[str, float]:
    """For each group, the largest measured ratio whose accuracy drop is at most `max_drop`
    (points), usable as `PruneConfig.ratios` (keys are group names)."""
    proposal = {}
    for name, curve in result.curves.items():
        ok = [r for r, acc in zip(result.ratios, curve) if result.baseline - acc <= max_drop]
        proposal[name] = max(ok, default=0.0)
    return proposal


def predicted_drop(result: Sensitivity, group: str, ratio: float) -> float:
    """Accuracy lost (points) when only `group` loses `ratio` of its channels: the measured curve
    interpolated linearly from (0, no loss), made non-decreasing so measurement noise never
    rewards pruning more."""
    drops = np.maximum.accumulate(np.maximum(0.0, result.baseline - np.asarray(result.curves[group], dtype=float)))
    return float(np.interp(ratio, [0.0, *result.ratios], [0.0, *drops]))


def allocate_ratios(model: nn.Module, result: Sensitivity, budget: Budget | dict, example_inputs=None, *,
                    config: PruneConfig | dict | None = None, data: Batches | None = None,
                    **options: Any) -> dict[str, float]:
    """Per-group ratios meeting `budget` (keep at most that fraction of the MACs or parameters)
    with the least predicted accuracy loss, usable as `PruneConfig.ratios` with `ratio=0`.

    Greedy on the sensitivity curves, assuming (as the classic sensitivity pruners do) that the
    loss of several pruned groups is the sum of each group's own loss. Each step lowers one
    group's kept count to the next multiple of `round_to` (removing its lowest-scored channels,
    as `prune` will): the group losing the least accuracy per fraction of the metric saved.
    Ratios never exceed the largest measured one."""
    cfg = parse_config(PruneConfig, config, **options)
    budget = Budget.model_validate(budget) if isinstance(budget, dict) else budget
    inputs = example_inputs_for(model, example_inputs)
    graph = graph_for(model, inputs, cfg)
    scores = scores_for(graph, cfg, data)
    meter = BudgetMeter(graph, inputs, budget.metric)
    multiple = cfg.round_to
    groups = {g.name: g.size for g in graph.groups
              if g.name in result.curves and scores.get(g.name) is not None and g.size > multiple}
    if not groups:
        raise ConfigError("allocate_ratios: no prunable group of this model has a sensitivity curve (all protected, or "
                          "smaller than one multiple of round_to?)")
    kept = dict(groups)  # kept channels per group: the size, then multiples of `multiple`

    def removal(counts: dict[str, int]) -> dict[str, list[int]]:
        return {name: lowest_units(scores[name], groups[name] - n) for name, n in counts.items() if n < groups[name]}

    now = meter.fraction({})
    while now > budget.keep:
        best = None
        for name, size in groups.items():
            fewer = (kept[name] - 1) // multiple * multiple
            if fewer < multiple or 1 - fewer / size > max(result.ratios) + 1e-9:
                continue  # keeps at least one multiple; no extrapolation past the measured ratios
            trial = dict(kept, **{name: fewer})
            saving = now - meter.fraction(removal(trial))
            if saving <= 0:
                continue
            loss = predicted_drop(result, name, 1 - fewer / size) - predicted_drop(result, name, 1 - kept[name] / size)
            cost = (loss + 1e-6) / saving  # equal losses: the larger saving first
            if best is None or cost < best[0]:
                best = (cost, trial, now - saving)
        if best is None:
            raise BudgetError(f"cannot reach {budget.keep:.3f} of the original {budget.metric.value} within the "
                              f"measured ratios (at most {max(result.ratios)}): {now:.3f} is the least")
        _, kept, now = best
    return {name: 1 - kept[name] / size for name, size in groups.items()}


def sensitivity_config(model: nn.Module, data: Any, config: PruneConfig, *, calibration: Batches | None = None,
                       max_drop: float | None = None, batches: int = 8, ratios: Sequence[float] = (0.25, 0.5, 0.75),
                       state: str | os.PathLike | None = None) -> tuple[Sensitivity, PruneConfig]:
    """Measure every group's curve on `batches` batches of the validation split of `data`, then the
    config that prunes by them: the least predicted loss within `config.budget` (`allocate_ratios`),
    or, without a budget, each group's largest ratio losing at most `max_drop` points. With
    `state`, the curves are saved there as they are measured and an interrupted call resumes."""
    if (config.budget is None) == (max_drop is None):
        raise ConfigError("sensitivity: give exactly one of a budget (allocate within it) and max_drop "
                          "(the points each group may lose)")
    measure = config.model_copy(update={"budget": None})
    key = {"data": data if isinstance(data, str) else getattr(data, "name", type(data).__name__), "batches": batches}
    result = sensitivity(model, validation_score(data, limit_batches=batches), ratios=ratios, config=measure,
                         data=calibration, state=state, state_key=key)
    if not result.curves:
        raise ConfigError("sensitivity: the model has no prunable group to measure (every layer protected? "
                          "protect_ends keeps the first convolution and the classifier's input)")
    if config.budget is not None:
        chosen = allocate_ratios(model, result, config.budget, config=measure, data=calibration)
    else:
        chosen = propose_ratios(result, max_drop=max_drop)
    return result, config.model_copy(update={"ratios": chosen, "ratio": 0.0, "budget": None, "policy": Policy.UNIFORM})


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
