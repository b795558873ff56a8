"""The channel dependency graph: trace, propagate atoms through every op, then read coupled
groups off the union-find.

A *unit* is one union-find component: channels (in every coupled layer) that can only be removed
together. A *group* gathers the units that touch the same set of layer dimensions, so its units are
interchangeable and one ratio applies to it: the two convolutions of a block and the BN between
them form one group; the outputs of every block of a ResNet stage form another."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.fx as fx
import torch.nn as nn

from deepshrink.pruning import functional_ops, shape_ops, weighted_ops  # noqa: F401  (register ops)
from deepshrink.pruning.builder import DYNAMIC, Builder, FeatureMap, ParamRef, Slot, SplitValue, Value, tensor_args
from deepshrink.pruning.layer_ops import layer_op, leaf_types
from deepshrink.pruning.trace import example_inputs_for, propagate_shapes, trace


@dataclass
class Group:
    """Coupled units: `members[slot key] = (positions, unit ids)` says which index of which layer
    dimension belongs to which unit."""

    name: str
    size: int
    slots: list[Slot]
    members: dict[tuple[str, str], tuple[np.ndarray, np.ndarray]]
    roots: np.ndarray  # union-find root of each unit

    @property
    def layers(self) -> list[str]:
        return list(dict.fromkeys(s.layer for s in self.slots))

    def producer_slots(self) -> list[Slot]:
        return [s for s in self.slots if s.role in ("out", "pad")]

    def gather(self, key: tuple[str, str], per_index: torch.Tensor) -> torch.Tensor:
        """Sum a per-index score vector of one layer dimension into one score per unit."""
        positions, units = self.members[key]
        out = torch.zeros(self.size, dtype=per_index.dtype, device=per_index.device)
        return out.index_add_(0, torch.as_tensor(units, device=per_index.device),
                              per_index[torch.as_tensor(positions, device=per_index.device)])


@dataclass
class DependencyGraph:
    model: nn.Module
    gm: fx.GraphModule
    inputs: tuple[torch.Tensor, ...]
    slots: list[Slot]
    groups: list[Group]
    pinned: dict[str, str]  # 'layer:role' of each pinned channel set -> why, for reports
    features: list[FeatureMap] = field(default_factory=list)
    roots: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))

    def group(self, name: str) -> Group:
        for group in self.groups:
            if group.name == name:
                return group
        from deepshrink.errors import UnknownNameError, close_matches

        names = [g.name for g in self.groups]
        raise UnknownNameError(f"no prunable group '{name}'{close_matches(name, names)}")

    def describe(self) -> str:
        lines = [f"{len(self.groups)} prunable groups, {sum(g.size for g in self.groups)} units"]
        lines += [f"  {g.name}: {g.size} units over {len(g.layers)} layers" for g in self.groups]
        lines += [f"  pinned {layer}: {why}" for layer, why in self.pinned.items()]
        return "\n".join(lines)


def _walk(b: Builder) -> None:
    env: dict[fx.Node, object] = {}
    for node in b.gm.graph.nodes:
        b.node = node
        args = fx.node.map_arg(node.args, lambda n: env[n])
        kwargs = fx.node.map_arg(node.kwargs, lambda n: env[n])
        env[node] = _dispatch(b, node, args, kwargs)
        if node.op == "output":
            for value in tensor_args(args):
                b.pin(value.atoms, "model output")


def _dispatch(b: Builder, node: fx.Node, args, kwargs):
    if node.op == "placeholder":
        if not hasattr(node.meta.get("tensor_meta"), "shape"):
            return DYNAMIC
        shape = b.shape()
        value = b.new_value(1 if len(shape) > 1 else 0, shape)
        b.pin(value.atoms, "model input")
        return value
    if node.op == "get_attr":
        attr = b.gm
        for part in node.target.split("."):
            attr = getattr(attr, part)
        return ParamRef(node.target, attr) if isinstance(attr, torch.Tensor) else DYNAMIC
    if node.op == "output":
        return None
    if node.op == "call_module":
        module = b.modules[node.target]
        op = layer_op(module)
        if op is None:
            raise b.unsupported("has no channel semantics (not a known layer type)")
        if not args or type(args[0]) is not Value or len(tensor_args(args)) != 1:
            raise b.unsupported("is called with other than one traced activation")
        return op.trace(b, node.target, module, args[0])
    handler = functional_ops.method_op(node.target) if node.op == "call_method" else functional_ops.function_op(
        node.target
    )
    if handler is not None:
        if not getattr(handler, "accepts_split", False) and any(
            isinstance(v, SplitValue) for v in tensor_args((args, kwargs))
        ):
            raise b.unsupported("acts on channels split across two dimensions (only reshape and transpose may)")
        return handler(b, args, kwargs)
    touches_tensors = tensor_args((args, kwargs)) or any(isinstance(a, ParamRef) for a in (*args, *kwargs.values()))
    if not touches_tensors and not hasattr(node.meta.get("tensor_meta"), "shape"):
        return DYNAMIC  # integer arithmetic on sizes
    raise b.unsupported("has no channel semantics; pruning cannot tell how it maps channels")


def _end_layers(slots: list[Slot]) -> set[str]:
    """The first convolution and the last layer producing channels (the classifier)."""
    producers = [s for s in slots if s.role == "out"]
    convs = [s for s in producers if s.module_type.startswith("Conv")]
    return {s.layer for s in (convs[:1] + producers[-1:])}


def build_graph(model: nn.Module, example_inputs=None, *, protect: Sequence[str] = (),
                protect_ends: bool = False) -> DependencyGraph:
    """Trace `model` and compute its coupled channel groups. Channels of protected layers, model
    inputs and outputs, and of ops whose constants fix a channel count are pinned (never removed)."""
    inputs = example_inputs_for(model, example_inputs)
    gm = trace(model, leaf_types())
    propagate_shapes(gm, inputs)
    b = Builder(gm, model)
    _walk(b)
    slots = sorted(b.slots.values(), key=lambda s: s.order)
    protected = set(protect) | (_end_layers(slots) if protect_ends else set())
    for s in slots:  # protecting a block protects every layer inside it
        hit = next((p for p in protected if s.layer == p or s.layer.startswith(p + ".")), None)
        if hit is not None:
            b.pin(s.atoms, f"layer '{hit}' is protected")
    return _assemble(model, gm, inputs, b, slots)


def _assemble(model, gm, inputs, b: Builder, slots: list[Slot]) -> DependencyGraph:
    roots = b.uf.roots()
    pinned_roots: dict[int, str] = {}
    for atom, reason in b.pins.items():
        pinned_roots.setdefault(int(roots[atom]), reason)
    produced = {int(r) for s in slots for r in roots[s.atoms[s.producer]]}
    signature: dict[int, list[tuple[str, str]]] = {}
    for s in slots:
        for r in dict.fromkeys(roots[s.atoms].tolist()):
            signature.setdefault(r, []).append(s.key)
    pinned: dict[str, str] = {}
    by_signature: dict[tuple, list[int]] = {}
    for root, keys in signature.items():
        reason = pinned_roots.get(root) or (None if root in produced else "no layer produces it")
        if reason is not None:
            pinned.setdefault(f"{keys[0][0]}:{keys[0][1]}", reason)
            continue
        by_signature.setdefault(tuple(keys), []).append(root)
    slot_of = {s.key: s for s in slots}
    groups, names = [], set()
    for keys, unit_roots in by_signature.items():
        unit_roots = sorted(unit_roots)
        index = {r: i for i, r in enumerate(unit_roots)}
        members = {}
        for key in keys:
            slot_roots = roots[slot_of[key].atoms]
            positions = np.flatnonzero(np.isin(slot_roots, unit_roots))
            members[key] = (positions, np.array([index[int(r)] for r in slot_roots[positions]], dtype=np.int64))
        group_slots = [slot_of[k] for k in keys]
        leader = next((s for s in group_slots if s.role in ("out", "pad")), group_slots[0]).layer
        name = leader if leader not in names else f"{leader}#{sum(n.split('#')[0] == leader for n in names) + 1}"
        names.add(name)
        groups.append(Group(name, len(unit_roots), group_slots, members, np.array(unit_roots, dtype=np.int64)))
    return DependencyGraph(model, gm, inputs, slots, groups, pinned, b.features, roots)
