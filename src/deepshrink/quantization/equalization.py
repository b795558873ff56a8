"""Cross-layer equalisation (Nagel et al. 2019, "Data-Free Quantization").

For consecutive layers y = W2 f(W1 x + b1) with f positively homogeneous (ReLU), scaling output
channel i of layer 1 by 1/s_i and input channel i of layer 2 by s_i leaves the function
unchanged. With s_i = sqrt(r1_i / r2_i), where r1_i and r2_i are the channel's weight ranges
(max |w|) in the two layers, both ranges become sqrt(r1_i r2_i): channels that a per-tensor grid
would crush get a fair share of it. Chains are equalised by sweeping all pairs until the scales
settle. Weights change, shapes do not: the "equalize" transform replays as a re-trace."""

from __future__ import annotations

import torch
import torch.fx as fx
import torch.nn as nn

from deepshrink.models.spec import TRANSFORMS, derive
from deepshrink.quantization.graph import finish, is_homogeneous, module_of, trace

_LAYERS = (nn.Conv1d, nn.Conv2d, nn.Linear)


def equalization_pairs(graph_module: fx.GraphModule) -> list[tuple[str, str]]:
    """(first, second) layer names joined only through ReLU-like nodes with a single user each."""
    pairs = []
    for node in graph_module.graph.nodes:
        first = module_of(graph_module, node)
        if type(first) not in _LAYERS or _groups(first) != 1:
            continue
        current = node
        while len(current.users) == 1:
            current = next(iter(current.users))
            second = module_of(graph_module, current)
            if type(second) in _LAYERS:
                if _in_channels(second) == first.weight.shape[0] and _groups(second) in (1, _in_channels(second)):
                    pairs.append((str(node.target), str(current.target)))
                break
            if not is_homogeneous(graph_module, current):
                break
    return pairs


def _groups(layer: nn.Module) -> int:
    return getattr(layer, "groups", 1)


def _in_channels(layer: nn.Module) -> int:
    return layer.in_features if isinstance(layer, nn.Linear) else layer.in_channels


def _input_axis_range(layer: nn.Module) -> torch.Tensor:
    """max |w| over everything that multiplies each input channel."""
    w = layer.weight.detach()
    if _groups(layer) == 1:
        return w.abs().transpose(0, 1).reshape(w.shape[1], -1).amax(dim=1)
    return w.abs().reshape(w.shape[0], -1).amax(dim=1)  # depthwise: filter i reads channel i


@torch.no_grad()
def equalize_pair(first: nn.Module, second: nn.Module) -> float:
    """Equalise one pair in place; returns the largest relative scale change."""
    r1 = first.weight.detach().abs().reshape(first.weight.shape[0], -1).amax(dim=1)
    r2 = _input_axis_range(second)
    scale = torch.where((r1 > 0) & (r2 > 0), torch.sqrt(r1 / r2.clamp(min=1e-12)), torch.ones_like(r1))
    shape = (-1,) + (1,) * (first.weight.dim() - 1)
    first.weight.div_(scale.reshape(shape))
    if first.bias is not None:
        first.bias.div_(scale)
    if _groups(second) == 1:
        second.weight.mul_(scale.reshape((1, -1) + (1,) * (second.weight.dim() - 2)))
    else:
        second.weight.mul_(scale.reshape((-1,) + (1,) * (second.weight.dim() - 1)))
    return float((scale - 1).abs().max())


def equalize(model: nn.Module, *, iterations: int = 20, tolerance: float = 1e-4) -> nn.Module:
    """A new model with every eligible layer pair equalised (fold BatchNorm first: a BN between
    the layers is not positively homogeneous per channel and blocks the pair)."""
    graph_module = trace(model)
    pairs = equalization_pairs(graph_module)
    for _ in range(iterations):
        change = max((equalize_pair(graph_module.get_submodule(a), graph_module.get_submodule(b)) for a, b in pairs), default=0.0)
        if change < tolerance:
            break
    return derive(model, finish(graph_module), "equalize", {"pairs": [list(p) for p in pairs]})


@TRANSFORMS.register("equalize")
def _replay_equalize(model: nn.Module, plan: dict) -> nn.Module:
    # Weights only: the saved state dict carries the equalised values; tracing keeps the
    # state-dict names identical to those of the traced model that was saved.
    return trace(model)
