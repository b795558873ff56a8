"""Semantics of functions and tensor methods met in traced graphs: element-wise ops, binary ops
with broadcasting (add/sub/mul couple channels; an SE scale of shape [N, C, 1, 1] couples with the
tensor it scales), reductions and pooling. Anything not registered here or in shape_ops.py is an
UnsupportedOpError naming the op and node, never silently treated as element-wise."""

from __future__ import annotations

import operator
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F

from deepshrink.pruning.builder import DYNAMIC, Builder, ParamRef, SplitValue, Value, norm_dim

_FUNCTIONS: dict[Any, Callable] = {}
_METHODS: dict[str, Callable] = {}


def register_op(*targets: Any) -> Callable:
    """Register a handler `(builder, args, kwargs) -> value` for functions and method names."""

    def decorator(handler: Callable) -> Callable:
        for target in targets:
            (_METHODS if isinstance(target, str) else _FUNCTIONS)[target] = handler
        return handler

    return decorator


def function_op(target: Any) -> Callable | None:
    return _FUNCTIONS.get(target)


def method_op(name: str) -> Callable | None:
    return _METHODS.get(name)


def _first_value(b: Builder, args: tuple) -> Value:
    if not args or not isinstance(args[0], Value):
        raise b.unsupported("is applied to something other than a traced activation")
    return args[0]


def _same_channels(b: Builder, x: Value, after_activation: bool = False) -> Value:
    shape = b.shape()
    if len(shape) != len(x.shape) or shape[x.cdim] != x.channels:
        raise b.unsupported(f"changes the channel dimension ({x.shape} -> {shape})")
    out = x.like(shape)
    if after_activation:
        b.feature(out, after_activation=True)
    return out


ACTIVATION_FUNCTIONS = (
    F.relu, torch.relu, F.relu_, torch.relu_, F.relu6, F.leaky_relu, F.elu, F.selu, F.celu, F.gelu, F.silu, F.mish,
    F.hardswish, F.hardsigmoid, F.hardtanh, F.softplus, F.sigmoid, torch.sigmoid, F.tanh, torch.tanh, F.logsigmoid,
    "relu", "relu_", "sigmoid", "sigmoid_", "tanh", "tanh_", "hardswish", "silu",
)


@register_op(*ACTIVATION_FUNCTIONS)
def _activation(b, args, kwargs):
    return _same_channels(b, _first_value(b, args), after_activation=True)


def accepts_split(handler: Callable) -> Callable:
    """Mark a handler that also understands SplitValue (channels split over two dims)."""
    handler.accepts_split = True
    return handler


@register_op("contiguous", "clone", "detach", "float", "double", "half", "to", "type_as", "cpu", "cuda")
@accepts_split
def _copy(b, args, kwargs):
    x = args[0]
    if isinstance(x, SplitValue):
        if b.shape() != x.shape:
            raise b.unsupported("changes the shape of channels split across two dimensions")
        return x
    return _same_channels(b, _first_value(b, args))


@register_op(
    torch.clamp, torch.clip, torch.abs, torch.neg, operator.neg, torch.exp, torch.sqrt, torch.square,
    F.dropout, F.dropout1d, F.dropout2d, F.dropout3d, F.alpha_dropout, F.interpolate,
    F.max_pool1d, F.max_pool2d, F.max_pool3d, F.avg_pool1d, F.avg_pool2d, F.avg_pool3d, F.lp_pool2d,
    F.adaptive_avg_pool1d, F.adaptive_avg_pool2d, F.adaptive_avg_pool3d,
    F.adaptive_max_pool1d, F.adaptive_max_pool2d, F.adaptive_max_pool3d,
    "clamp", "clamp_", "clip", "abs", "neg", "exp", "sqrt", "square", "pow",
)
def _channelwise(b, args, kwargs):
    """Ops acting on each channel separately (pooling and resizing change only spatial dims)."""
    return _same_channels(b, _first_value(b, args))


@register_op(
    operator.add, operator.sub, operator.mul, operator.truediv, operator.iadd, operator.isub, operator.imul,
    operator.itruediv, torch.add, torch.sub, torch.mul, torch.div, torch.maximum, torch.minimum,
    "add", "add_", "sub", "sub_", "mul", "mul_", "div", "div_",
)
def _binary(b, args, kwargs):
    """Broadcasting element-wise op: channels at the same index are coupled."""
    operands = [*args[:2], *(v for k, v in kwargs.items() if k == "other")]
    values = [v for v in operands if isinstance(v, Value)]
    if not values:
        raise b.unsupported("combines tensors that do not come from the model input")
    shape = b.shape()
    # Broadcasting aligns trailing dimensions: place each operand's channel dim in the output.
    dims = {len(shape) - len(v.shape) + v.cdim for v in values}
    if len(dims) > 1:
        raise b.unsupported("broadcasts the channels of its operands against different dimensions")
    cdim = dims.pop()
    channels = shape[cdim]
    full = [v for v in values if v.channels == channels]
    if not full:
        raise b.unsupported(f"broadcasts a single channel to {channels} channels")
    for v in full[1:]:
        b.couple(full[0].atoms, v.atoms)
    for param in (p for p in operands if isinstance(p, ParamRef)):
        pdim = cdim - (len(shape) - param.tensor.dim())
        size = param.tensor.shape[pdim] if pdim >= 0 else 1
        if size == channels and channels > 1:
            b.slot(param.path, "param", "Parameter", full[0].atoms, dim=pdim)
        elif size != 1:
            raise b.unsupported(f"combines a parameter '{param.path}' whose dimension {pdim} is not the channels")
    return Value(full[0].atoms, cdim, shape)


@register_op(torch.mean, torch.sum, torch.amax, torch.amin, "mean", "sum", "amax", "amin", "std", "var")
def _reduce(b, args, kwargs):
    x = _first_value(b, args)
    dim = kwargs.get("dim", args[1] if len(args) > 1 else None)
    keepdim = kwargs.get("keepdim", args[2] if len(args) > 2 and isinstance(args[2], bool) else False)
    if dim is None or dim is DYNAMIC:
        b.pin(x.atoms, f"{b.describe()} reduces over all dimensions")
        return None
    dims = {norm_dim(d, len(x.shape)) for d in (dim if isinstance(dim, (tuple, list)) else (dim,))}
    shape = b.shape()
    if x.cdim in dims:
        # A mean over channels (spatial attention) mixes every channel into one.
        b.pin(x.atoms, f"{b.describe()} reduces over the channel dimension")
        if not keepdim:
            raise b.unsupported("reduces away the channel dimension")
        return b.new_value(x.cdim, shape)
    cdim = x.cdim if keepdim else x.cdim - sum(d < x.cdim for d in dims)
    return x.like(shape, cdim)


@register_op("size", "dim", "numel", getattr)
@accepts_split
def _shape_query(b, args, kwargs):
    return DYNAMIC
