"""The search space: one gene per prunable group, whose levels are the distinct kept widths that the
configured ratios give once rounded (ratios that round to the same width are one level, so no
candidate is evaluated twice under two names). A genome is a tuple of level indices.

Levels are read off `prune` itself (one uniform prune per ratio, the groups' kept counts from its
report), so the searched ratios mean exactly what `PruneConfig(ratios=...)` will do with them."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn as nn

from deepshrink.errors import BudgetError, ModelError
from deepshrink.nas.search.config import SearchConfig
from deepshrink.metrics import model_bytes
from deepshrink.nas.search.costs import CostModel, Term, build_cost_model
from deepshrink.pruning import build_graph, prune

Genome = tuple[int, ...]


@dataclass(frozen=True)
class Gene:
    group: str
    size: int
    ratios: tuple[float, ...]  # smallest configured ratio giving each level
    kept: tuple[int, ...]  # kept units at each level, decreasing


@dataclass
class SearchSpace:
    genes: list[Gene]
    base: dict[str, float]  # the unpruned model: macs, params
    cost: CostModel

    @property
    def levels(self) -> list[int]:
        return [len(g.kept) for g in self.genes]

    def ratios(self, genome: Genome) -> dict[str, float]:
        """The plan: group name -> ratio, for PruneConfig.ratios (unpruned groups left out)."""
        return {g.group: g.ratios[i] for g, i in zip(self.genes, genome) if i > 0}

    def removed(self, genome: Genome) -> list[int]:
        return [g.size - g.kept[i] for g, i in zip(self.genes, genome)]

    def predict(self, metric: str, genome: Genome) -> float:
        return self.cost.predict(metric, self.removed(genome))

    def uniform(self, ratio: float) -> Genome:
        """Every group at the largest level whose ratio is at most `ratio`."""
        return tuple(max(i for i, r in enumerate(g.ratios) if r <= ratio + 1e-12) for g in self.genes)

    def smallest(self) -> Genome:
        return tuple(n - 1 for n in self.levels)

    def unpruned(self) -> Genome:
        return (0,) * len(self.genes)


def build_space(model: nn.Module, inputs: tuple[torch.Tensor, ...], cfg: SearchConfig,
                calibration: Sequence | None = None) -> SearchSpace:
    kept: dict[str, dict[int, float]] = {}
    sizes: dict[str, int] = {}
    base: dict[str, float] = {}
    for ratio in cfg.ratios:
        report = prune(model, inputs, config=cfg.prune_config({}, verify=False).model_copy(update={"ratio": ratio}),
                       data=calibration).report
        base = {"macs": float(report["macs"]["before"]), "params": float(report["params"]["before"])}
        for group in report["groups"]:
            sizes[group["name"]] = group["units"]
            kept.setdefault(group["name"], {}).setdefault(group["kept"], ratio)  # smallest ratio per width
    genes = [
        Gene(name, sizes[name], tuple(by_width[w] for w in sorted(by_width, reverse=True)),
             tuple(sorted(by_width, reverse=True)))
        for name, by_width in kept.items() if len(by_width) > 1
    ]
    if not genes:
        raise BudgetError(f"nothing to search: no group of {type(model).__name__} can be pruned with ratios up to "
                          f"{max(cfg.ratios)} and round_to {cfg.round_to} (protected layers and rounding in force)")
    graph = build_graph(model, inputs, protect=sorted(cfg.protect.resolve(model)) if not cfg.protect.is_empty()
                        else (), protect_ends=cfg.protect_ends)
    names = {g.name for g in graph.groups}
    missing = sorted({g.group for g in genes} - names)
    if missing:
        raise ModelError(f"pruning reported groups {missing} that the dependency graph of "
                         f"{type(model).__name__} does not have")
    cost = build_cost_model(model, graph, [g.group for g in genes], inputs[0])
    space = SearchSpace(genes, base, cost)
    # The safetensors header (names, shapes) is the only part of the stored bytes no tensor holds.
    base["bytes"] = float(model_bytes(model)["fp32"])
    cost.bytes.append(Term(base["bytes"] - space.predict("bytes", space.unpruned())))
    return space
