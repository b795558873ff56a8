"""Rank selection: one function per rank-rule type (fixed, energy, VBMF, params/MACs ratio).

Automatic rules leave a layer as it is when its decomposition would not make it smaller; explicit
ranks are applied as given."""

from __future__ import annotations

import bisect
import functools
from dataclasses import dataclass, field
from typing import Callable

import torch
import torch.nn as nn

from deepshrink.errors import BudgetError, ConfigError
from deepshrink.lowrank.config import Advanced, Allocation, Budget, EnergyRule, FixedRanks, RankRule, RatioRule, VBMFRule
from deepshrink.lowrank.methods import Decomposer, Rank
from deepshrink.lowrank.primitives import energy_rank, singular_values
from deepshrink.threads import one_thread
from deepshrink.lowrank.shapes import trace_shapes
from deepshrink.lowrank.vbmf import evbmf


@dataclass
class Target:
    name: str
    decomposer: Decomposer


@dataclass
class RankContext:
    model: nn.Module
    input_size: tuple[int, ...] | None
    advanced: Advanced
    calibration: torch.Tensor | None = None


@dataclass
class Selection:
    ranks: dict[str, Rank]
    fitted: dict[tuple[str, Rank], nn.Sequential] = field(default_factory=dict)  # reusable fits


def select_ranks(rule: RankRule, targets: list[Target], ctx: RankContext) -> Selection:
    return _RULES[type(rule)](rule, targets, ctx)


def _fixed(rule: FixedRanks, targets: list[Target], ctx: RankContext) -> Selection:
    return Selection({t.name: t.decomposer.normalise(rule.ranks[t.name]) for t in targets})


def _by_spectrum(targets: list[Target], matrix_rank: Callable[[torch.Tensor], int]) -> Selection:
    chosen = {}
    for t in targets:
        with one_thread():
            rank = t.decomposer.from_matrix_ranks([matrix_rank(m) for m in t.decomposer.matrices()])
        if t.decomposer.params(rank) < t.decomposer.original_params():
            chosen[t.name] = rank
    return Selection(chosen)


def _energy(rule: EnergyRule, targets: list[Target], ctx: RankContext) -> Selection:
    return _by_spectrum(targets, lambda m: energy_rank(singular_values(m), rule.energy))


def _vbmf(rule: VBMFRule, targets: list[Target], ctx: RankContext) -> Selection:
    return _by_spectrum(targets, lambda m: max(evbmf(m).rank, 1))


@dataclass
class LayerCosts:
    """A layer's candidate ranks, cheapest first, with what each costs under the budget."""

    target: Target
    ranks: list[Rank]
    costs: list[int]
    original: int

    def pick(self, limit: float) -> int:
        """Index of the richest rank costing at most `limit` (the cheapest if none does)."""
        return max(bisect.bisect_right(self.costs, limit) - 1, 0)

    def cost_at(self, index: int) -> int:
        """What the layer costs with that rank; a rank costing more than the layer is not used."""
        return min(self.costs[index], self.original)


def _ratio(rule: RatioRule, targets: list[Target], ctx: RankContext) -> Selection:
    layers, total = _layer_costs(rule.budget, targets, ctx)
    fixed = total - sum(layer.original for layer in layers)
    available = total / rule.ratio - fixed
    floor = sum(layer.cost_at(0) for layer in layers)
    if floor > available:
        raise BudgetError(
            f"ratio {rule.ratio:g} on {rule.budget.value} is not reachable: the layers left alone hold {fixed:,} "
            f"of {total:,} and every decomposed layer at rank 1 still needs {floor:,}, so at most "
            f"{total / (fixed + floor):.2f}x; lower the ratio or exclude fewer layers"
        )
    return _ALLOCATORS[rule.allocation](layers, available, ctx)


def _layer_costs(budget: Budget, targets: list[Target], ctx: RankContext) -> tuple[list[LayerCosts], int]:
    total, measure = _BUDGETS[budget](targets, ctx)
    layers = []
    for t in targets:
        cost, original = measure(t)
        ranks = t.decomposer.family()
        layers.append(LayerCosts(t, ranks, [cost(r) for r in ranks], original))
    return layers, total


Measure = Callable[[Target], tuple[Callable[[Rank], int], int]]  # target -> (rank -> cost, original cost)


def _param_budget(targets: list[Target], ctx: RankContext) -> tuple[int, Measure]:
    total = sum(p.numel() for p in ctx.model.parameters())
    return total, lambda t: (t.decomposer.params, t.decomposer.original_params())


def _mac_budget(targets: list[Target], ctx: RankContext) -> tuple[int, Measure]:
    from deepshrink.metrics import macs as count_macs

    if ctx.input_size is None:
        raise ConfigError(
            "budget 'macs' needs the input size: build the model with deepshrink.create_model (it carries a "
            "spec) or pass calibration images"
        )
    total = count_macs(ctx.model, ctx.input_size)[0]
    shapes = trace_shapes(ctx.model, [t.name for t in targets], ctx.input_size)
    return total, lambda t: (
        functools.partial(t.decomposer.macs, shape=shapes[t.name]),
        t.decomposer.original_macs(shapes[t.name]),
    )


def _uniform(layers: list[LayerCosts], available: float, ctx: RankContext) -> Selection:
    """Every layer keeps the same fraction f of its cost; f is the largest that fits (bisection)."""

    def spend(fraction: float) -> int:
        return sum(layer.cost_at(layer.pick(fraction * layer.original)) for layer in layers)

    low, high = 0.0, 1.0
    for _ in range(60):
        middle = (low + high) / 2
        low, high = (middle, high) if spend(middle) <= available else (low, middle)
    index = {layer.target.name: layer.pick(low * layer.original) for layer in layers}
    _fill(layers, index, available - spend(low))
    chosen = {}
    for layer in layers:
        i = index[layer.target.name]
        if layer.costs[i] < layer.original:
            chosen[layer.target.name] = layer.ranks[i]
    return Selection(chosen)


def _fill(layers: list[LayerCosts], index: dict[str, int], left: float) -> None:
    """Rank steps are coarse, so one fraction for all leaves budget unspent: give it out one step
    at a time to the layer that keeps the smallest fraction of its cost, while a step fits."""
    while True:
        best, best_share = None, None
        for layer in layers:
            i = index[layer.target.name]
            if i + 1 < len(layer.ranks) and layer.cost_at(i + 1) - layer.cost_at(i) <= left:
                share = layer.cost_at(i) / layer.original
                if best_share is None or share < best_share:
                    best, best_share = layer, share
        if best is None:
            return
        i = index[best.target.name]
        left -= best.cost_at(i + 1) - best.cost_at(i)
        index[best.target.name] = i + 1


def _sensitivity(layers: list[LayerCosts], available: float, ctx: RankContext) -> Selection:
    from deepshrink.lowrank.sensitivity import allocate, measure

    if ctx.calibration is None:
        raise ConfigError("allocation 'sensitivity' needs calibration images (pass calibration=..., or --data)")
    table, fitted = measure(layers, ctx)
    return Selection(allocate(table, available), fitted)


_RULES: dict[type, Callable[..., Selection]] = {
    FixedRanks: _fixed,
    EnergyRule: _energy,
    VBMFRule: _vbmf,
    RatioRule: _ratio,
}
_BUDGETS: dict[Budget, Callable[[list[Target], RankContext], tuple[int, Measure]]] = {
    Budget.PARAMS: _param_budget,
    Budget.MACS: _mac_budget,
}
_ALLOCATORS: dict[Allocation, Callable[[list[LayerCosts], float, RankContext], Selection]] = {
    Allocation.UNIFORM: _uniform,
    Allocation.SENSITIVITY: _sensitivity,
}
