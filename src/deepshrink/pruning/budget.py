"""Meeting a MACs or parameter budget: bisection on the ratio, then group-by-group refinement, each
candidate measured on a meta-device skeleton of the model (real surgery and a real forward pass,
but no arithmetic, so a measurement costs milliseconds)."""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence

import torch
import torch.nn as nn

from deepshrink.errors import BudgetError
from deepshrink.pruning import primitives
from deepshrink.pruning.config import Budget, Metric
from deepshrink.pruning.measure import count_macs, count_params
from deepshrink.pruning.plan import apply_plan

Removal = dict[str, list[int]]


class BudgetMeter:
    """The fraction of the unpruned model's MACs or parameters a plan keeps."""

    def __init__(self, model: nn.Module, inputs: Sequence[torch.Tensor], metric: Metric) -> None:
        self.skeleton = copy.deepcopy(model).to("meta")
        self.inputs = tuple(torch.empty((1, *x.shape[1:]), dtype=x.dtype, device="meta") for x in inputs)
        self.metric = metric
        self.before = self.count(self.skeleton)

    def count(self, model: nn.Module) -> int:
        return count_macs(model, self.inputs) if self.metric is Metric.MACS else count_params(model)

    def fraction(self, plan: dict) -> float:
        return self.count(apply_plan(self.skeleton, plan)) / self.before


def meet_budget(budget: Budget, meter: BudgetMeter, choose_at: Callable[[float], Removal],
                plan_of: Callable[[Removal], dict], scores: dict, *, tolerance: float,
                max_ratio: float = 0.98, steps: int = 14) -> Removal:
    """The removal keeping at most `budget.keep` of the metric, as close to it as group rounding
    allows: bisect the ratio to a bracket (lo above the budget, hi within it), then move groups
    from lo's removal to hi's one at a time, least important first, until within budget."""
    keep = budget.keep

    def fraction(removal: Removal) -> float:
        return meter.fraction(plan_of(removal))

    if fraction(choose_at(0.0)) <= keep:
        return {}
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
    return _refine(choose_at(lo), choose_at(hi), fraction, scores, keep)


def _refine(low: Removal, high: Removal, fraction: Callable[[Removal], float], scores: dict,
            keep: float) -> Removal:
    def cost(name: str) -> float:
        extra = sorted(set(high[name]) - set(low.get(name, ())))
        return float(primitives.normalise(scores[name])[extra].mean()) if extra else 0.0

    moves = sorted((name for name in high if len(high[name]) > len(low.get(name, ()))), key=cost)
    current = dict(low)
    for name in moves:
        current[name] = high[name]
        if fraction(current) <= keep:
            return current
    return high
