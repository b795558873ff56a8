"""Importance criteria: callables `criterion(group, context) -> scores` giving one score per unit
of a coupled group (higher = keep), aggregated over the group's coupled layers. A criterion may
return None when it cannot rank a group (e.g. bn_scale on a group without a norm layer): the group
is then left whole. Users register their own in CRITERIA."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F

from deepshrink.errors import ConfigError
from deepshrink.pruning import primitives
from deepshrink.pruning.graph import DependencyGraph, Group
from deepshrink.registry import Registry
from deepshrink.pruning.builder import Slot

Batches = list[tuple[torch.Tensor, torch.Tensor]]


@dataclass
class ScoringContext:
    """What a criterion may look at: the graph (and through it the model), calibration batches
    for data-driven criteria, a seeded generator, and a cache shared by all groups of one call."""

    graph: DependencyGraph
    calibration: Batches | None = None
    seed: int = 0
    objective: Callable | None = None  # objective(model, images, labels) -> (loss, outputs)
    aggregate: str = "producers"  # or "group": magnitude criteria also score the consumers' inputs
    cache: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.modules = dict(self.graph.model.named_modules())
        self.generator = torch.Generator().manual_seed(self.seed)

    def module(self, layer: str) -> nn.Module:
        return self.modules[layer]

    def loss(self, model: nn.Module, images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """The calibration loss: the objective's, else cross-entropy on classification logits."""
        if self.objective is not None:
            return self.objective(model, images, labels)[0]
        logits = model(images)
        if not isinstance(logits, torch.Tensor) or logits.dim() != 2 or logits.shape[0] != labels.shape[0]:
            shape = tuple(logits.shape) if isinstance(logits, torch.Tensor) else type(logits).__name__
            raise ConfigError(
                f"{type(model).__name__} does not return class logits [N, classes] (got {shape}): pass "
                "objective=callable(model, images, labels) -> (loss, outputs) for gradient-based criteria"
            )
        return F.cross_entropy(logits, labels)

    def batches(self, criterion: str) -> Batches:
        if not self.calibration:
            raise ConfigError(
                f"criterion '{criterion}' needs calibration data: pass data=[(images, labels), ...] "
                "(or --data on the command line)"
            )
        return self.calibration


Criterion = Callable[[Group, ScoringContext], "torch.Tensor | None"]
# Register with `needs_data=True` when the criterion reads ctx.batches(...).
CRITERIA: Registry[Criterion] = Registry("importance criterion")


def _weighted_slots(group: Group, ctx: ScoringContext, role: str) -> Iterable[tuple[Slot, nn.Module]]:
    for slot in group.slots:
        if slot.role == role and slot.layer in ctx.modules:
            module = ctx.module(slot.layer)
            if getattr(module, "weight", None) is not None:
                yield slot, module


def filter_scores(group: Group, ctx: ScoringContext, score_rows: Callable[[torch.Tensor], torch.Tensor]) -> torch.Tensor:
    """Score every producing layer's filters, normalise per layer, sum per unit over the layers.
    Units made only of zero padding get 0: they carry nothing. With `ctx.aggregate == "group"`
    each dense consumer's input columns are scored the same way and added: a channel whose
    readers ignore it is cheap to remove even when its filter is large."""
    total = torch.zeros(group.size)
    for slot, module in _weighted_slots(group, ctx, "out"):
        total += group.gather(slot.key, primitives.normalise(score_rows(module.weight)))
    if ctx.aggregate == "group":
        for slot, module in _weighted_slots(group, ctx, "in"):
            if getattr(module, "groups", 1) == 1:  # a grouped consumer's inputs are its producer's channels
                total += group.gather(slot.key, primitives.normalise(score_rows(primitives.input_columns(module.weight))))
    return total


@CRITERIA.register("l1")
def l1(group: Group, ctx: ScoringContext) -> torch.Tensor:
    """L1 norm of the filters (Li et al., Pruning Filters for Efficient ConvNets)."""
    return filter_scores(group, ctx, lambda w: primitives.row_norms(w, 1))


@CRITERIA.register("l2")
def l2(group: Group, ctx: ScoringContext) -> torch.Tensor:
    return filter_scores(group, ctx, lambda w: primitives.row_norms(w, 2))


@CRITERIA.register("fpgm")
def fpgm(group: Group, ctx: ScoringContext) -> torch.Tensor:
    """Distance to the geometric median of each layer's filters (He et al. 2019): filters close to
    it are redundant with the others and go first."""
    return filter_scores(group, ctx, primitives.fpgm_scores)


@CRITERIA.register("bn_scale")
def bn_scale(group: Group, ctx: ScoringContext) -> torch.Tensor | None:
    """|gamma| of the group's normalisation layers (network slimming, Liu et al. 2017)."""
    slots = [(s, m) for s, m in _weighted_slots(group, ctx, "channels") if not isinstance(m, nn.PReLU)]
    if not slots:
        return None
    total = torch.zeros(group.size)
    for slot, module in slots:
        total += group.gather(slot.key, module.weight.detach().abs().float())
    return total


@CRITERIA.register("random")
def random(group: Group, ctx: ScoringContext) -> torch.Tensor:
    return torch.rand(group.size, generator=ctx.generator)


def score_groups(graph: DependencyGraph, criterion: str, ctx: ScoringContext) -> dict[str, torch.Tensor | None]:
    fn = CRITERIA.get(criterion)
    if CRITERIA.meta(criterion).get("needs_data"):
        ctx.batches(criterion)  # fail early, even when no group is left to score
    return {group.name: fn(group, ctx) for group in graph.groups}


# The data-driven criteria register themselves into CRITERIA (kept in their own module for size).
from deepshrink.pruning import importance_data  # noqa: E402,F401
