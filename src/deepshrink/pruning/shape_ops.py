"""Ops that move channels around: concatenation and chunk/split (offsets), indexing (strided
spatial slicing), reshape/flatten (channel x spatial expansion before a linear), permute, and
zero-padding on the channel dimension (option-A shortcuts), whose pad widths become prunable
when the module doing the padding is registered with `register_channel_pad`."""

from __future__ import annotations

import operator

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from deepshrink.pruning.builder import DYNAMIC, Builder, SplitValue, Value, norm_dim
from deepshrink.pruning.functional_ops import accepts_split, register_op
from deepshrink.pruning.layer_ops import LayerOp, register_layer

# "module.path:ClassName" -> (front attribute, back attribute) of a module that zero-pads channels.
CHANNEL_PADS: dict[str, tuple[str, str]] = {}


def class_path(cls: type) -> str:
    return f"{cls.__module__}:{cls.__qualname__}"


def register_channel_pad(cls: type | str, front: str, back: str) -> None:
    """Declare that `cls.forward` zero-pads channels with int attributes `front` and `back`,
    so pruning may shrink the padding (e.g. the option-A shortcut of CIFAR ResNets). `cls` may be
    given as "package.module:ClassName" so the module need not be imported."""
    CHANNEL_PADS[cls if isinstance(cls, str) else class_path(cls)] = (front, back)


register_channel_pad("deepshrink.models.zoo.layers:ChannelPadShortcut", "pad_front", "pad_back")


@register_op(torch.cat, torch.concat, torch.concatenate)
def _cat(b: Builder, args, kwargs):
    tensors = kwargs.get("tensors", args[0])
    dim = kwargs.get("dim", args[1] if len(args) > 1 else 0)
    if not tensors or not all(isinstance(t, Value) for t in tensors):
        raise b.unsupported("concatenates tensors that do not come from the model input")
    shape = b.shape()
    first = tensors[0]
    if norm_dim(dim, len(shape)) == first.cdim and all(t.cdim == first.cdim for t in tensors):
        return Value(np.concatenate([t.atoms for t in tensors]), first.cdim, shape)
    for t in tensors[1:]:  # concatenated along another dim: channel i of every input is one channel
        b.couple(first.atoms, t.atoms)
    return first.like(shape)


def _parts(b: Builder, x: Value, dim: int, reason: str | None) -> list[Value]:
    shapes = b.out_shapes()
    if norm_dim(dim, len(x.shape)) != x.cdim:
        return [x.like(s) for s in shapes]
    sizes = [s[x.cdim] for s in shapes]
    if reason is not None:
        b.pin(x.atoms, reason)
    elif len(set(sizes)) == 1:
        for k in range(1, len(sizes)):  # chunk(n) needs equal parts: index i of every part goes together
            b.couple(x.atoms[: sizes[0]], x.atoms[k * sizes[0]:(k + 1) * sizes[0]])
    else:
        b.pin(x.atoms, f"{b.describe()} splits channels into unequal chunks")
    offsets = np.cumsum([0, *sizes])
    return [Value(x.atoms[o:o + n], x.cdim, s) for o, n, s in zip(offsets, sizes, shapes)]


@register_op(torch.chunk, "chunk")
def _chunk(b, args, kwargs):
    return _parts(b, args[0], kwargs.get("dim", args[2] if len(args) > 2 else 0), None)


@register_op(torch.split, torch.tensor_split, "split", "tensor_split")
def _split_op(b, args, kwargs):
    # The split sizes are constants in the model code: pruning would break them.
    dim = kwargs.get("dim", args[2] if len(args) > 2 else 0)
    return _parts(b, args[0], dim, f"{b.describe()} splits channels by constant sizes")


@register_op(operator.getitem)
def _getitem(b, args, kwargs):
    container, index = args
    if isinstance(container, (list, tuple)):
        return container[index]
    if not isinstance(container, Value):
        return DYNAMIC
    return _index(b, container, index)


def _index(b: Builder, x: Value, index) -> Value:
    items = list(index) if isinstance(index, tuple) else [index]
    if any(i is Ellipsis for i in items):
        at = items.index(Ellipsis)
        fill = len(x.shape) - (len(items) - 1 - sum(i is None for i in items))
        items[at:at + 1] = [slice(None)] * fill
    dim, cdim, atoms = 0, x.cdim, x.atoms
    for item in items:
        if item is None:
            cdim += dim <= x.cdim
            continue
        if isinstance(item, slice):
            if dim == x.cdim and item != slice(None):
                _pin_sliced(b, x, item)
                atoms = x.atoms[item]
        elif isinstance(item, int):
            if dim == x.cdim:
                raise b.unsupported("selects a single channel")
            cdim -= dim < x.cdim
        else:
            raise b.unsupported("uses tensor (advanced) indexing")
        dim += 1
    return Value(atoms, cdim, b.shape())


def _pin_sliced(b: Builder, x: Value, item: slice) -> None:
    """Constant slice bounds fix the channels before them; channels past the bounds may still go."""
    start, stop, step = item.start or 0, item.stop, item.step or 1
    if any(v is DYNAMIC for v in (start, stop, step)):
        fixed = x.channels
    elif start < 0 or (stop is not None and stop < 0) or step != 1:
        fixed = x.channels
    else:
        fixed = start if stop is None else min(stop, x.channels)
    b.pin(x.atoms[:fixed], f"{b.describe()} slices channels with constant bounds")


def _literal(b: Builder, atoms: np.ndarray, literal_sizes: list | None, j: int, what: str) -> None:
    """A reshape whose size at channel position j is a constant in the code fixes those channels."""
    if literal_sizes is not None and j < len(literal_sizes):
        size = literal_sizes[j]
        if size is not DYNAMIC and size != -1:
            b.pin(atoms, f"{b.describe()} reshapes to a constant {what} {size}")


def _reshape(b: Builder, x: Value | SplitValue, literal_sizes: list | None) -> Value | SplitValue:
    """Map channels through a reshape: kept whole (unsqueeze, [N,C]->[N,C,1,1]), merged with the
    trailing dims (flatten before a linear: channel c owns features c*k ... c*k+k-1), or split into
    (groups, channels per group) for a channel shuffle."""
    shape = b.shape()
    if isinstance(x, SplitValue):
        return _merge(b, x, literal_sizes)
    outer = int(np.prod(x.shape[: x.cdim]))
    inner = int(np.prod(x.shape[x.cdim + 1:]))
    channels = x.channels
    for j in range(len(shape)):
        if int(np.prod(shape[:j])) != outer or (shape[j] == 1 and channels != 1):
            continue
        tail = int(np.prod(shape[j + 1:]))
        if shape[j] % channels == 0 and inner % tail == 0 and shape[j] // channels == inner // tail:
            _literal(b, x.atoms, literal_sizes, j, "channel size")
            return Value(np.repeat(x.atoms, shape[j] // channels), j, shape)
        if j + 1 < len(shape) and shape[j] * shape[j + 1] == channels and tail // shape[j + 1] == inner:
            return _split_channels(b, x, j, literal_sizes)
    raise b.unsupported(f"reshapes {x.shape} -> {shape} in a way that mixes the channel dimension")


def _split_channels(b: Builder, x: Value, j: int, literal_sizes: list | None) -> SplitValue:
    shape = b.shape()
    grid = x.atoms.reshape(shape[j], shape[j + 1])
    # Groups must stay equal in size: index i of every group is removed together.
    for k in range(1, shape[j]):
        b.couple(grid[0], grid[k])
    _literal(b, x.atoms, literal_sizes, j + 1, "channels per group")
    return SplitValue(grid, (j, j + 1), shape)


def _merge(b: Builder, x: SplitValue, literal_sizes: list | None) -> Value | SplitValue:
    shape = b.shape()
    if shape == x.shape:
        return SplitValue(x.grid, x.dims, shape)
    lo, hi = sorted(x.dims)
    if hi == lo + 1 and lo < len(shape) and shape[lo] == x.grid.size and \
            int(np.prod(shape[:lo])) == int(np.prod(x.shape[:lo])):
        # Row-major order over the two dims as they now lie in the tensor.
        atoms = (x.grid if x.dims[0] < x.dims[1] else x.grid.T).reshape(-1)
        _literal(b, atoms, literal_sizes, lo, "channel size")
        return Value(atoms, lo, shape)
    raise b.unsupported(f"reshapes {x.shape} -> {shape} in a way that mixes the split channel dimensions")


def _shape_args(args, kwargs) -> list:
    sizes = list(args[1]) if len(args) == 2 and isinstance(args[1], (list, tuple)) else list(args[1:])
    return list(kwargs.get("shape", kwargs.get("size", sizes)))


@register_op("view", "reshape", "expand", torch.reshape)
@accepts_split
def _view(b, args, kwargs):
    sizes = _shape_args(args, kwargs)
    return _reshape(b, _value(b, args[0], split_ok=True), sizes if len(sizes) == len(b.shape()) else None)


@register_op(torch.flatten, "flatten", "unsqueeze", torch.unsqueeze, "squeeze", torch.squeeze, "expand_as",
             "view_as", "reshape_as")
@accepts_split
def _flatten(b, args, kwargs):
    return _reshape(b, _value(b, args[0], split_ok=True), None)


def _value(b: Builder, x, split_ok: bool = False):
    if isinstance(x, SplitValue) and split_ok:
        return x
    if type(x) is not Value:
        raise b.unsupported("is applied to something other than a traced activation")
    return x


@register_op("permute", torch.permute, "transpose", torch.transpose)
@accepts_split
def _permute(b, args, kwargs):
    x = _value(b, args[0], split_ok=True)
    ndim = len(x.shape)
    if b.node.target in ("permute", torch.permute):
        order = [norm_dim(d, ndim) for d in kwargs.get("dims", _shape_args(args, {}))]
        where = {old: new for new, old in enumerate(order)}
    else:
        d0, d1 = (norm_dim(d, ndim) for d in args[1:3])
        where = {d0: d1, d1: d0}
    if isinstance(x, SplitValue):
        return SplitValue(x.grid, tuple(where.get(d, d) for d in x.dims), b.shape())
    return x.like(b.shape(), where.get(x.cdim, x.cdim))


@register_op(F.pad)
def _pad(b, args, kwargs):
    x = _value(b, args[0])
    pad = list(kwargs.get("pad", args[1] if len(args) > 1 else ()))
    value = kwargs.get("value", args[3] if len(args) > 3 else None)
    mode = kwargs.get("mode", args[2] if len(args) > 2 else "constant")
    pair = 2 * (len(x.shape) - 1 - x.cdim)  # F.pad lists (before, after) pairs from the last dim
    if len(pad) <= pair:
        return x.like(b.shape())
    front, back = pad[pair], pad[pair + 1]
    if front is DYNAMIC or back is DYNAMIC or mode != "constant" or value not in (None, 0, 0.0):
        raise b.unsupported("pads channels with computed widths or non-zero values")
    zeros_front, zeros_back = b.fresh(front), b.fresh(back)
    atoms = np.concatenate([zeros_front, x.atoms, zeros_back])
    owner = _owner(b, front, back)
    if owner is None:
        b.pin(np.concatenate([zeros_front, zeros_back]),
              f"{b.describe()} pads channels with constant widths (register its module with register_channel_pad)")
    else:
        producer = np.zeros(len(atoms), dtype=bool)
        producer[:front] = producer[front + x.channels:] = True
        b.slot(owner, "pad", "ChannelPad", atoms, producer=producer)
    return Value(atoms, x.cdim, b.shape())


def _owner(b: Builder, front: int, back: int) -> str | None:
    """Path of the registered channel-pad module this F.pad belongs to, if its widths match."""
    stack = b.node.meta.get("nn_module_stack") or {}
    if not stack:
        return None
    path, cls = list(stack.values())[-1]
    attrs = CHANNEL_PADS.get(class_path(cls)) if isinstance(cls, type) else CHANNEL_PADS.get(str(cls))
    module = b.modules.get(path)
    if attrs is None or module is None:
        return None
    if (getattr(module, attrs[0], None), getattr(module, attrs[1], None)) != (front, back):
        return None
    return path


@register_layer(nn.Flatten)
class FlattenOp(LayerOp):
    def trace(self, b, name, module, x):
        return _reshape(b, x, None)
