"""Policies: which units of which groups to remove, given their scores.

Uniform applies one ratio (or the per-layer ratio map) to every group; global ranks all units of
all groups together on per-group normalised scores. Kept counts are rounded to a multiple.
Meeting a MACs or parameter budget is in budget.py."""

from __future__ import annotations

from collections.abc import Callable

import torch

from deepshrink.errors import ConfigError
from deepshrink.pruning import primitives
from deepshrink.pruning.config import Policy
from deepshrink.pruning.graph import DependencyGraph
from deepshrink.pruning.selection import match_key

Scores = dict[str, "torch.Tensor | None"]
Removal = dict[str, list[int]]


def group_ratios(graph: DependencyGraph, ratio: float, overrides: dict[str, float]) -> dict[str, float]:
    """Ratio of each group: a key naming the group itself, else the first key matching one of its
    producing layers (a layer name or regex), else `ratio`. Every key must match something."""
    paths = [name for name, _ in graph.model.named_modules() if name]
    names = {g.name for g in graph.groups}
    matched = {}
    for key in overrides:
        hits = set(match_key(key, paths))
        if not hits and key not in names:
            raise ConfigError(f"per-layer ratio key '{key}' matches no layer or group")
        matched[key] = hits
    result = {}
    for group in graph.groups:
        producers = {s.layer for s in group.producer_slots()}
        key = group.name if group.name in overrides else next((k for k in overrides if matched[k] & producers), None)
        result[group.name] = overrides[key] if key is not None else ratio
    return result


def lowest_units(scores: torch.Tensor, count: int) -> list[int]:
    """Indices of the `count` lowest scores, sorted."""
    order = torch.argsort(scores, stable=True)  # ties: lower index goes first, deterministic
    return sorted(order[:count].tolist())


def uniform(graph: DependencyGraph, scores: Scores, ratios: dict[str, float], round_to: int) -> Removal:
    removal = {}
    for group in graph.groups:
        if scores.get(group.name) is None:
            continue
        keep = primitives.kept_count(group.size, ratios[group.name], round_to)
        if keep < group.size:
            removal[group.name] = lowest_units(scores[group.name], group.size - keep)
    return removal


def global_ranking(graph: DependencyGraph, scores: Scores, ratio: float, round_to: int) -> Removal:
    """Remove the `ratio` fraction of all units with the lowest per-group normalised score, each
    group keeping at least one multiple, then round each group's count."""
    ranked = [
        (float(v), group.name, i)
        for group in graph.groups
        if scores.get(group.name) is not None
        for i, v in enumerate(primitives.normalise(scores[group.name]))
    ]
    sizes = {g.name: g.size for g in graph.groups}
    target = int(round(ratio * len(ranked)))
    removed = dict.fromkeys(sizes, 0)
    for _, name, _ in sorted(ranked):
        if sum(removed.values()) >= target:
            break
        if sizes[name] - removed[name] > min(sizes[name], round_to):
            removed[name] += 1
    removal = {}
    for name, count in removed.items():
        keep = primitives.kept_count(sizes[name], count / sizes[name], round_to) if count else sizes[name]
        if keep < sizes[name]:
            removal[name] = lowest_units(scores[name], sizes[name] - keep)
    return removal


POLICIES: dict[Policy, Callable[..., Removal]] = {Policy.UNIFORM: uniform, Policy.GLOBAL: global_ranking}


def choose(graph: DependencyGraph, scores: Scores, *, policy: Policy, ratio: float, ratios: dict[str, float],
           round_to: int) -> Removal:
    if policy is Policy.GLOBAL:
        if ratios:
            raise ConfigError("per-layer ratios need policy 'uniform' (global ranking sets them itself)")
        return global_ranking(graph, scores, ratio, round_to)
    return uniform(graph, scores, group_ratios(graph, ratio, ratios), round_to)
