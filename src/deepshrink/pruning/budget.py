"""Meeting a MACs or parameter budget: bisection on the ratio, then group-by-group refinement.
Candidates are measured from the layers' real shapes (output sizes recorded on one forward pass,
kept counts per layer dimension summed from the removed units) rather than by cutting a copy each
time, so a measurement costs well under a millisecond; the final model is measured itself."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch
import torch.nn as nn

from deepshrink.errors import BudgetError
from deepshrink.pruning import primitives
from deepshrink.pruning.config import Budget, Metric
from deepshrink.pruning.graph import DependencyGraph
from deepshrink.pruning.layer_ops import layer_op
from deepshrink.pruning.measure import count_params
from deepshrink.pruning.trace import eval_mode

Removal = dict[str, list[int]]


class BudgetMeter:
    """The fraction of the unpruned model's MACs or parameters that a removal keeps."""

    def __init__(self, graph: DependencyGraph, inputs: Sequence[torch.Tensor], metric: Metric) -> None:
        model = graph.model
        self.metric = metric
        # Per group and layer dimension: how many indices each unit holds there.
        self.per_unit = {g.name: {key: np.bincount(units, minlength=g.size) for key, (_, units) in g.members.items()}
                         for g in graph.groups}
        self.slots = {s.key: (len(s.atoms), s.dim) for s in graph.slots}
        self.ops = {n: (m, layer_op(m)) for n, m in model.named_modules() if layer_op(m) is not None}
        self.positions: dict[str, int] = {}  # output positions per example, summed over calls

        def hook(name: str):
            def record(module, args, output):
                channels = module.out_features if isinstance(module, nn.Linear) else module.out_channels
                self.positions[name] = self.positions.get(name, 0) + output.numel() // channels
            return record

        handles = [m.register_forward_hook(hook(n)) for n, m in model.named_modules()
                   if isinstance(m, (nn.modules.conv._ConvNd, nn.Linear))]
        try:
            with eval_mode(model), torch.no_grad():
                model(*(x[:1] for x in inputs))
        finally:
            for handle in handles:
                handle.remove()
        self.params = count_params(model)
        self.params_of = {n: op.cost(m, {})[0] for n, (m, op) in self.ops.items()}
        self.shapes = {n: tuple(p.shape) for n, p in model.named_parameters()}
        self.before = self.count({})

    def count(self, layers: dict) -> int:
        if self.metric is Metric.MACS:
            return sum(self.ops[n][1].cost(self.ops[n][0], layers.get(n, {}))[1] * positions
                       for n, positions in self.positions.items())
        total = self.params
        for name, entry in layers.items():
            if "param" in entry:  # a tensor read in forward, cut along one dim (buffers do not count)
                shape = self.shapes.get(name)
                if shape is not None:
                    numel = int(torch.tensor(shape).prod())
                    total -= numel - numel // shape[entry["dim"]] * len(entry["param"])
            elif name in self.ops:
                module, op = self.ops[name]
                total += op.cost(module, entry)[0] - self.params_of[name]
        return total

    def layers(self, removal: Removal) -> dict:
        """Plan-like entries with the kept count (as a range) of each changed layer dimension."""
        gone: dict[tuple[str, str], int] = {}
        for name, units in removal.items():
            for key, counts in self.per_unit[name].items():
                gone[key] = gone.get(key, 0) + int(counts[units].sum())
        layers: dict[str, dict] = {}
        for (layer, role), count in gone.items():
            size, dim = self.slots[(layer, role)]
            entry = layers.setdefault(layer, {})
            entry[role] = range(size - count)
            if role == "param":
                entry["dim"] = dim
        return layers

    def fraction(self, removal: Removal) -> float:
        return self.count(self.layers(removal)) / self.before


def meet_budget(budget: Budget, meter: BudgetMeter, choose_at: Callable[[float], Removal], scores: dict, *,
                round_to: int, tolerance: float, max_ratio: float = 0.98, steps: int = 20) -> Removal:
    """The removal keeping at most `budget.keep` of the metric, as close to it as rounding allows:
    bisect the policy's ratio to the largest ratio still above the budget, then remove one
    multiple of `round_to` units at a time from whichever group offers the least important ones,
    until the budget is met (rounding makes the ratio alone jump past it)."""
    keep = budget.keep

    fraction = meter.fraction
    if fraction(choose_at(0.0)) <= keep:
        return choose_at(0.0)  # the fixed per-layer ratios alone are within budget: keep them
    floor = fraction(choose_at(max_ratio))
    if floor > keep:
        raise BudgetError(f"cannot reach {keep:.3f} of the original {budget.metric.value}: pruning keeps at least "
                          f"{floor:.3f} with the protected layers and rounding in force")
    lo, hi = 0.0, max_ratio
    for _ in range(steps):
        mid = (lo + hi) / 2
        value = fraction(choose_at(mid))
        if value <= keep:
            hi = mid
            if keep - value <= tolerance:
                return choose_at(hi)
        else:
            lo = mid
    refined = _refine(choose_at(lo), fraction, scores, keep, round_to)
    return refined if refined is not None else choose_at(hi)


def _refine(start: Removal, fraction: Callable[[Removal], float], scores: dict, keep: float,
            round_to: int) -> Removal | None:
    """Greedy steps of one multiple of units from an over-budget removal: a step that meets the
    budget and lands closest to it ends the search; otherwise take the step removing the least
    importance per fraction saved. None if every group is down to one multiple first."""
    order = {name: torch.argsort(s, stable=True).tolist() for name, s in scores.items() if s is not None}
    normalised = {name: primitives.normalise(scores[name]) for name in order}
    current = {name: list(units) for name, units in start.items()}
    now = fraction(current)
    while True:
        within, best = [], None
        for name, ranked in order.items():
            removed = len(current.get(name, ()))
            if len(ranked) - removed - round_to < min(round_to, len(ranked)):
                continue  # a group keeps at least one multiple
            trial = dict(current, **{name: ranked[: removed + round_to]})
            value = fraction(trial)
            saving = now - value
            if value <= keep:
                within.append((value, name, trial))
            elif saving > 0:
                cost = float(normalised[name][ranked[removed:removed + round_to]].mean()) / saving
                if best is None or cost < best[0]:
                    best = (cost, name, trial, value)
        if within:
            return {k: sorted(v) for k, v in max(within, key=lambda w: w[0])[2].items()}
        if best is None:
            return None
        current, now = best[2], best[3]
