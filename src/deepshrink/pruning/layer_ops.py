"""Leaf-module semantics: the registry mapping module types to LayerOps, the LayerOp base class and
the parameter-free layers (activations, pooling, dropout, spatial padding) whose channels pass
through unchanged. Weighted layers (conv, linear, norms) live in weighted_ops.py."""

from __future__ import annotations

import abc
from collections.abc import Sequence

import torch
import torch.nn as nn
from torch.nn.modules import dropout, padding, pooling

from deepshrink.errors import ModelError
from deepshrink.pruning.builder import Builder, Value

_LAYER_OPS: dict[type, "LayerOp"] = {}


class LayerOp(abc.ABC):
    """How channels flow through one leaf module type, and how to cut it.

    `trace` maps the input Value to the output Value and records slots; `prune` cuts the module in
    place to the kept indices of each role; `zero` zeroes removed indices in place (verification
    reference); `indexed_params` lists parameters whose dim 0 is indexed by a role's positions;
    `sizes` gives each role's current length. Register one for your own leaf module with
    `@register_layer(MyModule)`."""

    @abc.abstractmethod
    def trace(self, b: Builder, name: str, module: nn.Module, x: Value) -> Value:
        """Output Value of `module` applied to `x`, recording slots and couplings on `b`."""

    def prune(self, module: nn.Module, entry: dict, layer: str) -> nn.Module:
        return module

    def zero(self, module: nn.Module, removed: dict) -> None:
        return None

    def indexed_params(self, module: nn.Module, role: str) -> list[torch.Tensor]:
        return []

    def sizes(self, module: nn.Module) -> dict[str, int]:
        return {}

    def cost(self, module: nn.Module, entry: dict) -> tuple[int, int]:
        """(own parameters, MACs per output position) once `entry` is applied: budgets are
        searched on these numbers instead of cutting a copy for every candidate."""
        return sum(p.numel() for p in module.parameters(recurse=False)), 0


def register_layer(*types: type):
    def decorator(cls: type[LayerOp]) -> type[LayerOp]:
        op = cls()
        for t in types:
            _LAYER_OPS[t] = op
        return cls

    return decorator


def layer_op(module: nn.Module) -> LayerOp | None:
    for cls in type(module).__mro__:
        if cls in _LAYER_OPS:
            return _LAYER_OPS[cls]
    return None


def leaf_types() -> tuple[type, ...]:
    return tuple(_LAYER_OPS)


def take(tensor: torch.Tensor, dim: int, index: Sequence[int]) -> torch.Tensor:
    return tensor.index_select(dim, torch.as_tensor(list(index), dtype=torch.long, device=tensor.device)).clone()


def check_kept(layer: str, role: str, kept: Sequence[int], size: int) -> list[int]:
    kept = [int(i) for i in kept]
    if any(b <= a for a, b in zip(kept, kept[1:])) or (kept and (kept[0] < 0 or kept[-1] >= size)):
        raise ModelError(f"plan for layer '{layer}' role '{role}': kept indices must be increasing and below {size}")
    if not kept:
        raise ModelError(f"plan for layer '{layer}' role '{role}' removes every channel")
    return kept


def replace_param(module: nn.Module, name: str, tensor: torch.Tensor) -> None:
    old = getattr(module, name)
    if isinstance(old, nn.Parameter):
        setattr(module, name, nn.Parameter(tensor, requires_grad=old.requires_grad))
    else:  # a buffer (running statistics)
        setattr(module, name, tensor)


ACTIVATIONS = (
    nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.ELU, nn.SELU, nn.CELU, nn.GELU, nn.SiLU, nn.Mish, nn.Sigmoid, nn.Tanh,
    nn.Hardswish, nn.Hardsigmoid, nn.Hardtanh, nn.Softplus, nn.Softsign, nn.Tanhshrink, nn.LogSigmoid,
)


@register_layer(*ACTIVATIONS)
class ActivationOp(LayerOp):
    """Element-wise: channel i out is channel i in."""

    def trace(self, b, name, module, x):
        out = x.like(b.shape())
        b.feature(out, after_activation=True)
        return out


@register_layer(
    nn.Identity, dropout._DropoutNd, pooling._MaxPoolNd, pooling._AvgPoolNd, pooling._AdaptiveAvgPoolNd,
    pooling._AdaptiveMaxPoolNd, pooling._LPPoolNd, nn.Upsample, padding._ConstantPadNd, padding._ReflectionPadNd,
    padding._ReplicationPadNd,
)
class PassThroughOp(LayerOp):
    """Dropout, identity, pooling, upsampling and spatial padding act on each channel separately."""

    def trace(self, b, name, module, x):
        shape = b.shape()
        if len(shape) != len(x.shape) or shape[x.cdim] != x.channels:
            raise b.unsupported(f"changes the channel dimension ({x.shape} -> {shape})")
        return x.like(shape)


@register_layer(nn.Softmax, nn.LogSoftmax, nn.Softmin)
class SoftmaxOp(LayerOp):
    """Softmax over the channel dimension mixes channels: those channels cannot be pruned."""

    def trace(self, b, name, module, x):
        dim = module.dim if module.dim is not None else x.cdim
        if dim % len(x.shape) == x.cdim:
            b.pin(x.atoms, f"{type(module).__name__} '{name}' normalises over channels")
        return x.like(b.shape())


@register_layer(nn.LayerNorm)
class LayerNormOp(LayerOp):
    """LayerNorm's statistics span its normalised dims; if they include channels, no channel can go."""

    def trace(self, b, name, module, x):
        first_normalised = len(x.shape) - len(module.normalized_shape)
        if x.cdim >= first_normalised:
            b.pin(x.atoms, f"LayerNorm '{name}' normalises over the channel dimension")
        return x.like(b.shape())
