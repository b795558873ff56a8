"""The portable pruning plan and everything that applies it.

A plan is JSON data: for each changed layer, the kept indices of each of its dimensions (and the
new widths of channel-padding modules). `apply_plan` cuts any model of the same architecture, so
a pruned checkpoint is a plain state dict plus this plan, replayed on a freshly built model
(registered as the "prune" transform). Plans of successive steps compose into one."""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence

import numpy as np
import torch.nn as nn

from deepshrink.errors import ModelError
from deepshrink.models.spec import TRANSFORMS
from deepshrink.pruning.graph import DependencyGraph
from deepshrink.pruning.layer_ops import check_kept, layer_op, replace_param, take
from deepshrink.pruning.shape_ops import CHANNEL_PADS, class_path

PLAN_VERSION = 1


def make_plan(graph: DependencyGraph, removed: Mapping[str, Sequence[int]]) -> dict:
    """Plan removing, for each group name, the given unit indices."""
    removed_roots = np.array(
        sorted(int(graph.group(name).roots[i]) for name, units in removed.items() for i in units), dtype=np.int64
    )
    layers: dict[str, dict] = {}
    for slot in graph.slots:
        gone = np.isin(graph.roots[slot.atoms], removed_roots)
        if not gone.any():
            continue
        kept = np.flatnonzero(~gone)
        entry = layers.setdefault(slot.layer, {})
        entry[slot.role] = kept.tolist()
        if slot.role == "pad":
            front = int(np.argmin(slot.producer)) if not slot.producer.all() else len(slot.producer)
            back = len(slot.producer) - 1 - int(np.flatnonzero(~slot.producer)[-1]) if front < len(slot.producer) else 0
            entry["widths"] = [int((kept < front).sum()), int((kept >= len(slot.producer) - back).sum())]
        elif slot.role == "param":
            entry["dim"] = slot.dim
    groups = [
        {"name": g.name, "units": g.size, "removed": sorted(int(i) for i in removed.get(g.name, ())),
         "layers": g.layers}
        for g in graph.groups
    ]
    return {"version": PLAN_VERSION, "layers": layers, "groups": groups}


def _module(model: nn.Module, path: str) -> nn.Module:
    try:
        return model.get_submodule(path)
    except AttributeError:
        raise ModelError(f"pruning plan names layer '{path}', which {type(model).__name__} does not have") from None


def _prune_param(model: nn.Module, path: str, entry: dict) -> None:
    owner_path, _, attr = path.rpartition(".")
    owner = _module(model, owner_path) if owner_path else model
    tensor = getattr(owner, attr, None)
    if tensor is None:
        raise ModelError(f"pruning plan names parameter '{path}', which {type(model).__name__} does not have")
    kept = check_kept(path, "param", entry["param"], tensor.shape[entry["dim"]])
    replace_param(owner, attr, take(tensor.data, entry["dim"], kept))


def apply_plan(model: nn.Module, plan: Mapping) -> nn.Module:
    """A new model with the plan's channels physically removed; `model` is left untouched."""
    if plan.get("version") != PLAN_VERSION:
        raise ModelError(f"pruning plan version {plan.get('version')!r} is not supported (expected {PLAN_VERSION})")
    new = copy.deepcopy(model)
    for path, entry in plan.get("layers", {}).items():
        if "param" in entry:
            _prune_param(new, path, entry)
            continue
        module = _module(new, path)
        op = layer_op(module)
        if op is not None:
            op.prune(module, entry, path)
        elif class_path(type(module)) in CHANNEL_PADS:
            front_attr, back_attr = CHANNEL_PADS[class_path(type(module))]
            setattr(module, front_attr, int(entry["widths"][0]))
            setattr(module, back_attr, int(entry["widths"][1]))
        else:
            raise ModelError(f"pruning plan entry for '{path}': no pruning op for {type(module).__name__}")
    return new


def zero_removed(model: nn.Module, plan: Mapping) -> nn.Module:
    """In place: zero every removed channel where it is produced and where it is consumed, so the
    full-size model computes what the pruned one should (the verification reference)."""
    for path, entry in plan.get("layers", {}).items():
        if "param" in entry:
            continue
        module = _module(model, path)
        op = layer_op(module)
        if op is None:
            continue  # channel padding: the removed channels are zeros already
        removed = {
            role: sorted(set(range(size)) - set(entry[role])) for role, size in op.sizes(module).items() if role in entry
        }
        op.zero(module, removed)
    return model


def compose_plans(first: Mapping, second: Mapping) -> dict:
    """One plan equivalent to applying `first` then `second` (indices refer to the original)."""
    layers = copy.deepcopy(dict(first.get("layers", {})))
    for path, entry in second.get("layers", {}).items():
        merged = layers.setdefault(path, {})
        for role, kept in entry.items():
            if role in ("widths", "dim"):
                merged[role] = kept
            elif role in merged:
                merged[role] = [merged[role][i] for i in kept]
            else:
                merged[role] = list(kept)
    return {"version": PLAN_VERSION, "layers": layers, "groups": list(second.get("groups", []))}


def removed_fraction(plan: Mapping) -> dict[str, float]:
    """Per group: the fraction of its units the plan removes."""
    return {g["name"]: len(g["removed"]) / g["units"] for g in plan.get("groups", []) if g["units"]}


@TRANSFORMS.register("prune")
def replay_prune(model: nn.Module, plan: dict) -> nn.Module:
    """Rebuild the pruned shapes on a freshly built model (weights are loaded afterwards)."""
    return apply_plan(model, plan)
