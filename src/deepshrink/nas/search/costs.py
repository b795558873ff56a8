"""What a candidate costs, predicted without pruning it.

The dependency graph says which indices of which layer dimension belong to which prunable group.
Removing `r` units of a group shrinks each such dimension by `r` times the indices one unit holds
there. A tensor's size scales with the kept fraction of each dimension it spans, and a convolution's
or linear layer's MACs with its output channels and (unless it is depthwise) its input channels. For
the CNNs pruned here this equals the count on the pruned model exactly (a test checks); the search
uses it to repair candidates and to enumerate the layer shapes of the latency table, and still
judges MACs, parameters and bytes on the pruned model itself."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn as nn

from deepshrink.pruning import DependencyGraph

Removed = Sequence[int]  # units removed per gene (prunable group), in gene order


@dataclass(frozen=True)
class Dim:
    """One layer dimension: its full size and, per gene touching it, the indices one unit holds."""

    size: int
    shares: tuple[tuple[int, float], ...] = ()

    def kept(self, removed: Removed) -> float:
        return self.size - sum(per * removed[gene] for gene, per in self.shares)


@dataclass(frozen=True)
class Term:
    """A cost that is `base` at full size and scales with the kept fraction of each of `dims`."""

    base: float
    dims: tuple[Dim, ...] = ()

    def value(self, removed: Removed) -> float:
        value = self.base
        for dim in self.dims:
            value *= dim.kept(removed) / dim.size
        return value


@dataclass(frozen=True)
class LayerShape:
    """A convolution or linear layer as the latency table times it."""

    layer: str
    kind: str  # "conv" or "linear"
    in_dim: Dim
    out_dim: Dim
    kernel: tuple[int, ...] = ()
    stride: tuple[int, ...] = ()
    padding: tuple[int, ...] = ()
    dilation: tuple[int, ...] = ()
    groups: int = 1
    depthwise: bool = False  # pruned a whole group at a time: `groups` follows the channels
    spatial: tuple[int, ...] = ()  # input height, width (conv)
    rows: int = 1  # input rows per example (linear)

    def channels(self, removed: Removed) -> tuple[int, int, int]:
        """Kept (in, out, groups) for a candidate."""
        cin, cout = round(self.in_dim.kept(removed)), round(self.out_dim.kept(removed))
        groups = cout * self.groups // self.out_dim.size if self.depthwise else self.groups
        return cin, cout, groups


@dataclass
class CostModel:
    macs: list[Term]
    params: list[Term]
    bytes: list[Term]
    layers: list[LayerShape]

    def predict(self, metric: str, removed: Removed) -> float:
        return sum(term.value(removed) for term in getattr(self, metric))


def _whole_groups(conv: nn.modules.conv._ConvNd) -> bool:
    """Grouped convs whose groups hold one input or one output channel lose whole groups."""
    return conv.groups > 1 and (conv.in_channels == conv.groups or conv.out_channels == conv.groups)


def _padding(conv: nn.modules.conv._ConvNd) -> tuple[int, ...]:
    if isinstance(conv.padding, str):  # "valid" or "same" (stride 1): symmetric where it can be
        if conv.padding == "valid":
            return (0,) * len(conv.kernel_size)
        return tuple(d * (k - 1) // 2 for k, d in zip(conv.kernel_size, conv.dilation))
    return tuple(conv.padding)


def build_cost_model(model: nn.Module, graph: DependencyGraph, genes: Sequence[str],
                     example: torch.Tensor) -> CostModel:
    """Cost terms of `model` with the given groups as genes, measured on one example."""
    index = {name: i for i, name in enumerate(genes)}
    sizes = {slot.key: len(slot.atoms) for slot in graph.slots}
    shares: dict[tuple[str, str], list[tuple[int, float]]] = {}
    for group in graph.groups:
        if group.name in index:
            for key, (positions, _) in group.members.items():
                shares.setdefault(key, []).append((index[group.name], len(positions) / group.size))

    def dim(layer: str, role: str, size: int) -> Dim:
        return Dim(sizes.get((layer, role), size), tuple(shares.get((layer, role), ())))

    shapes: dict[str, tuple[torch.Size, int]] = {}

    def hook(name: str):
        def record(module: nn.Module, args, output: torch.Tensor) -> None:
            shapes[name] = (args[0].shape, output.numel())
        return record

    counted = {name: m for name, m in model.named_modules() if isinstance(m, (nn.modules.conv._ConvNd, nn.Linear))}
    handles = [m.register_forward_hook(hook(name)) for name, m in counted.items()]
    was_training = model.training
    try:
        with torch.no_grad():
            model.eval()(example[:1])
    finally:
        model.train(was_training)
        for handle in handles:
            handle.remove()

    macs, layers = [], []
    weight_dims: dict[str, tuple[Dim, ...]] = {}
    for name, m in counted.items():
        if name not in shapes:
            continue  # not used in forward: costs nothing
        in_shape, out_numel = shapes[name]
        is_conv = isinstance(m, nn.modules.conv._ConvNd)
        cin, cout = (m.in_channels, m.out_channels) if is_conv else (m.in_features, m.out_features)
        in_dim, out_dim = dim(name, "in", cin), dim(name, "out", cout)
        depthwise = is_conv and _whole_groups(m)
        spans = (out_dim,) if depthwise else (out_dim, in_dim)
        macs.append(Term(float(out_numel * m.weight[0].numel()), spans))
        weight_dims[f"{name}.weight"], weight_dims[f"{name}.bias"] = spans, (out_dim,)
        if is_conv and isinstance(m, nn.Conv2d):
            layers.append(LayerShape(name, "conv", in_dim, out_dim, tuple(m.kernel_size), tuple(m.stride),
                                     _padding(m), tuple(m.dilation), m.groups, depthwise, tuple(in_shape[-2:])))
        elif not is_conv:
            layers.append(LayerShape(name, "linear", in_dim, out_dim, rows=in_shape[:-1].numel()))

    params, stored = [], []
    for module_name, module in model.named_modules():
        channels = sizes.get((module_name, "channels"))
        tensors = [(n, t, True) for n, t in module.named_parameters(recurse=False)]
        tensors += [(n, t, False) for n, t in module.named_buffers(recurse=False)]
        for attr, tensor, is_param in tensors:
            path = f"{module_name}.{attr}" if module_name else attr
            if path in weight_dims:
                spans = weight_dims[path]
            elif (path, "param") in sizes:
                spans = (dim(path, "param", sizes[(path, "param")]),)
            elif channels is not None and tensor.dim() > 0 and tensor.shape[0] == channels:
                spans = (dim(module_name, "channels", channels),)
            else:
                spans = ()
            if is_param:
                params.append(Term(float(tensor.numel()), spans))
            stored.append(Term(float(tensor.numel() * 4 if tensor.is_floating_point() else tensor.nbytes), spans))
    return CostModel(macs, params, stored, layers)
