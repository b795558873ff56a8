"""Budget allocation by measured sensitivity: decompose one layer at a time at a few cost fractions,
measure how far the model's output moves on calibration images, then spend the budget greedily
where it buys the largest drop in that error per unit of cost (the layer-wise search AIMET and
Zhang et al. 2015 use, with output error in place of accuracy so no labels are needed)."""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
import torch.nn as nn

from deepshrink.export.common import eval_mode
from deepshrink.lowrank.methods import Rank
from deepshrink.lowrank.selection import set_module

if TYPE_CHECKING:
    from deepshrink.lowrank.ranks import LayerCosts, RankContext


@dataclass(frozen=True)
class Option:
    cost: int
    error: float  # relative L2 change of the model output with only this layer decomposed
    rank: Rank | None  # None: keep the original layer


def measure(layers: list[LayerCosts], ctx: RankContext) -> tuple[dict[str, list[Option]], dict[tuple[str, Rank], nn.Sequential]]:
    """Per layer, the options (cheapest first, ending with 'keep') and the fitted modules."""
    model = ctx.model
    device = next((p.device for p in model.parameters()), torch.device("cpu"))
    images = ctx.calibration[: ctx.advanced.calibration_batch].to(device)
    work = copy.deepcopy(model)
    table: dict[str, list[Option]] = {}
    fitted: dict[tuple[str, Rank], nn.Sequential] = {}
    with eval_mode(model), eval_mode(work), torch.no_grad():
        reference = model(images)
        scale = reference.norm().clamp_min(1e-12)
        for layer in layers:
            name, decomposer = layer.target.name, layer.target.decomposer
            original = work.get_submodule(name)
            picks = sorted({layer.pick(f * layer.original) for f in ctx.advanced.sensitivity_grid} | {0})
            options = []
            for index in picks:
                if layer.costs[index] >= layer.original:
                    continue
                rank = layer.ranks[index]
                module = decomposer.fit(rank, ctx.advanced).eval()
                set_module(work, name, module)
                error = float((work(images) - reference).norm() / scale)
                options.append(Option(layer.costs[index], error, rank))
                fitted[(name, rank)] = module.train(model.training)
            set_module(work, name, original)
            table[name] = [*options, Option(layer.original, 0.0, None)]
    return table, fitted


def allocate(table: dict[str, list[Option]], available: float) -> dict[str, Rank]:
    """Start every layer at its cheapest option; repeatedly take the affordable upgrade with the
    largest error drop per unit cost until none fits."""
    current = {name: 0 for name in table}
    spent = sum(options[0].cost for options in table.values())
    while True:
        best: tuple[float, str, int] | None = None
        for name, options in table.items():
            here = options[current[name]]
            for index in range(current[name] + 1, len(options)):
                extra = options[index].cost - here.cost
                if spent + extra > available:
                    continue
                gain = (here.error - options[index].error) / max(extra, 1)
                if best is None or gain > best[0]:
                    best = (gain, name, index)
        if best is None:
            break
        _, name, index = best
        spent += table[name][index].cost - table[name][current[name]].cost
        current[name] = index
    return {name: table[name][i].rank for name, i in current.items() if table[name][i].rank is not None}
