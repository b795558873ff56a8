"""The channel algebra shared by every op handler.

Each traced tensor carries one *atom* per channel along its channel dimension. Handlers alias
atoms when channels pass through unchanged (activations, cat, pooling, flatten), allocate fresh
atoms where channels are created (a convolution's outputs, zero-padding), and couple atoms with
union-find where channels must be removed together (add, SE multiply, depthwise convolution).
Layers record *slots*: which atoms each of their parameter dimensions holds, in index order."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.fx as fx
import torch.nn as nn

from deepshrink.errors import UnsupportedOpError
from deepshrink.pruning.unionfind import UnionFind


@dataclass
class Value:
    """A traced tensor: shape, channel dimension and the atom of each channel."""

    atoms: np.ndarray
    cdim: int
    shape: tuple[int, ...]

    @property
    def channels(self) -> int:
        return len(self.atoms)

    def like(self, shape: tuple[int, ...], cdim: int | None = None) -> "Value":
        return Value(self.atoms, self.cdim if cdim is None else cdim, shape)


@dataclass
class SplitValue:
    """Channels split over two tensor dims by a reshape, as in a channel shuffle: `grid[i, j]` is
    the atom at index i of dim `dims[0]` and j of dim `dims[1]`. Only reshape, transpose and
    copies may act on it; the reshape that merges the dims back yields a Value again."""

    grid: np.ndarray
    dims: tuple[int, int]
    shape: tuple[int, ...]

    @property
    def atoms(self) -> np.ndarray:
        return self.grid.reshape(-1)


@dataclass
class ParamRef:
    """A parameter or buffer read directly in forward (get_attr), e.g. a learned per-channel scale."""

    path: str
    tensor: torch.Tensor


class Dynamic:
    """A non-tensor value computed at run time (x.size(0), x.shape[1]...), as opposed to a literal."""

    def __repr__(self) -> str:
        return "<dynamic>"


DYNAMIC = Dynamic()


@dataclass
class Slot:
    """One parameter dimension of one layer and the atom each of its indices holds."""

    layer: str
    role: str  # "out", "in", "channels", "pad" or "param"
    module_type: str
    atoms: np.ndarray
    producer: np.ndarray  # per index: does the channel originate here (conv filter, zero padding)
    order: int
    dim: int = 0  # parameter dimension, for role "param"

    @property
    def key(self) -> tuple[str, str]:
        return (self.layer, self.role)


@dataclass
class FeatureMap:
    """A traced activation worth scoring by feature-map rank (HRank)."""

    node: str
    atoms: np.ndarray
    cdim: int
    after_activation: bool


@dataclass
class Builder:
    gm: fx.GraphModule
    model: nn.Module  # the traced model: traced-through modules (blocks, shortcuts) live only here
    uf: UnionFind = field(default_factory=UnionFind)
    slots: dict[tuple[str, str], Slot] = field(default_factory=dict)
    pins: dict[int, str] = field(default_factory=dict)
    features: list[FeatureMap] = field(default_factory=list)
    modules: dict[str, nn.Module] = field(init=False)
    node: fx.Node | None = None

    def __post_init__(self) -> None:
        self.modules = dict(self.model.named_modules())

    # shapes -------------------------------------------------------------------------------
    def shape(self, node: fx.Node | None = None) -> tuple[int, ...]:
        meta = (node or self.node).meta.get("tensor_meta")
        if meta is None or not hasattr(meta, "shape"):
            raise self.unsupported("produces no single tensor")
        return tuple(int(s) for s in meta.shape)

    def out_shapes(self) -> list[tuple[int, ...]]:
        meta = self.node.meta.get("tensor_meta")
        return [tuple(int(s) for s in m.shape) for m in meta]

    # atoms --------------------------------------------------------------------------------
    def fresh(self, count: int) -> np.ndarray:
        return self.uf.make(count)

    def new_value(self, cdim: int, shape: tuple[int, ...] | None = None) -> Value:
        shape = shape or self.shape()
        return Value(self.fresh(shape[cdim]), cdim, shape)

    def couple(self, a: np.ndarray, b: np.ndarray) -> None:
        self.uf.union_arrays(a, b)

    def pin(self, atoms: np.ndarray, reason: str) -> None:
        for atom in atoms.tolist():
            self.pins.setdefault(atom, reason)

    def slot(self, layer: str, role: str, module_type: str, atoms: np.ndarray, producer: bool | np.ndarray = False,
             dim: int = 0) -> None:
        mask = np.full(len(atoms), producer, dtype=bool) if isinstance(producer, bool) else producer
        existing = self.slots.get((layer, role))
        if existing is not None:  # a module called twice shares its weights: its channels are one
            self.couple(existing.atoms, atoms)
            existing.producer |= mask
            return
        self.slots[(layer, role)] = Slot(layer, role, module_type, atoms.copy(), mask, len(self.slots), dim)

    def feature(self, value: Value, after_activation: bool) -> None:
        if len(value.shape) >= 3:
            self.features.append(FeatureMap(self.node.name, value.atoms, value.cdim, after_activation))

    # errors -------------------------------------------------------------------------------
    def describe(self, node: fx.Node | None = None) -> str:
        node = node or self.node
        target = node.target
        if node.op == "call_module":
            op = f"module {type(self.modules[target]).__name__} ('{target}')"
        elif node.op == "call_method":
            op = f"method '.{target}()'"
        else:
            op = f"function '{getattr(target, '__module__', '') or ''}.{getattr(target, '__name__', target)}'".replace(
                "'.", "'"
            )
        return f"{op} at graph node '{node.name}'"

    def unsupported(self, why: str) -> UnsupportedOpError:
        return UnsupportedOpError(f"pruning graph: {self.describe()} {why}")


Handler = Callable[..., Any]


def tensor_args(args: Any) -> list[Value | SplitValue]:
    """Every traced activation inside (possibly nested) handler arguments."""
    if isinstance(args, (Value, SplitValue)):
        return [args]
    if isinstance(args, (list, tuple)):
        return [v for a in args for v in tensor_args(a)]
    if isinstance(args, dict):
        return [v for a in args.values() for v in tensor_args(a)]
    return []


def norm_dim(dim: int, ndim: int) -> int:
    return dim + ndim if dim < 0 else dim
