"""Rewrites that make a model convertible by pnnx into layers ncnn has, without changing its numbers.

ncnn has no strided slice: pnnx leaves `x[:, :, ::2, ::2]` (the option-A shortcut of CIFAR ResNets)
as a `Tensor.slice` layer that ncnn cannot load. A kernel-1 max-pool with the same stride keeps the
same pixels (a one-pixel window returns that pixel, and both give ceil(H / s) rows), and ncnn runs it
as Pooling. The zoo's ChannelPadShortcut switches to that form itself; strided spatial slices written
in a user's forward are replaced in a torch.fx graph."""

from __future__ import annotations

import copy
import operator
from collections.abc import Sequence

import torch
import torch.fx
import torch.nn as nn
import torch.nn.functional as F
from torch.fx.passes.shape_prop import ShapeProp

from deepshrink.errors import ExportError
from deepshrink.export.common import first_line, model_name
from deepshrink.models.zoo.layers import use_pooled_shortcuts_


def ncnn_friendly(model: nn.Module, input_size: Sequence[int]) -> nn.Module:
    """A float32 CPU copy of `model` in eval mode with strided spatial slices turned into kernel-1
    pooling. The caller's model is never changed."""
    try:
        friendly = copy.deepcopy(model)
    except Exception as exc:
        name = model_name(model)
        raise ExportError(f"cannot export {name} to ncnn: the model cannot be copied ({first_line(exc)})") from None
    friendly = friendly.to("cpu", torch.float32).eval()
    use_pooled_shortcuts_(friendly)
    return pool_strided_slices(friendly, input_size)


def pool_strided_slices(model: nn.Module, input_size: Sequence[int]) -> nn.Module:
    """`model` with every `x[:, :, ::a, ::b]` on a 4-d tensor replaced by a kernel-1 max-pool of
    stride (a, b), as an fx GraphModule; `model` itself when nothing matched or it is not fx-traceable
    (then pnnx converts it as it is and the export names any layer ncnn lacks)."""
    try:
        graph_module = torch.fx.symbolic_trace(model)
        ShapeProp(graph_module).propagate(torch.zeros(1, *input_size))
    except Exception:
        return model
    graph = graph_module.graph
    replaced = 0
    for node in list(graph.nodes):
        stride = _spatial_stride(node)
        if stride is None:
            continue
        with graph.inserting_after(node):
            pooled = graph.call_function(F.max_pool2d, (node.args[0],), {"kernel_size": 1, "stride": stride})
        node.replace_all_uses_with(pooled)
        graph.erase_node(node)
        replaced += 1
    if not replaced:
        return model
    graph.lint()
    graph_module.recompile()
    return graph_module


def _spatial_stride(node: torch.fx.Node) -> tuple[int, int] | None:
    """(stride_h, stride_w) when `node` is `x[:, :, ::a, ::b]` (start 0, no stop) on a 4-d tensor
    with a or b > 1; None otherwise."""
    if node.op != "call_function" or node.target is not operator.getitem or len(node.args) != 2:
        return None
    source, index = node.args
    meta = source.meta.get("tensor_meta") if isinstance(source, torch.fx.Node) else None
    if meta is None or not hasattr(meta, "shape") or len(meta.shape) != 4:
        return None
    index = tuple(index) if isinstance(index, tuple) else (index,)
    if index.count(Ellipsis) == 1:
        at = index.index(Ellipsis)
        index = index[:at] + (slice(None),) * (4 - len(index) + 1) + index[at + 1 :]
    index = index + (slice(None),) * (4 - len(index))
    if len(index) != 4 or not all(isinstance(item, slice) for item in index):
        return None
    if index[0] != slice(None) or index[1] != slice(None):
        return None
    stride = []
    for item in index[2:]:
        step = 1 if item.step is None else item.step
        if item.start not in (None, 0) or item.stop is not None or not isinstance(step, int) or step < 1:
            return None
        stride.append(step)
    return (stride[0], stride[1]) if stride != [1, 1] else None
