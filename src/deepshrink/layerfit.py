"""Closed-form ridge least-squares fit of one convolution's or linear layer's weights to the
outputs wanted from it on given inputs. Shared by the low-rank reconstruction (refit a decomposed
layer's last factor) and the detection distillation (start each feature adapter at the best linear
map from student to teacher features instead of a random one)."""

from __future__ import annotations

from collections.abc import Callable, Iterable

import torch
import torch.nn as nn
import torch.nn.functional as F

from deepshrink.errors import ModelError

Pairs = Iterable[tuple[torch.Tensor, torch.Tensor]]


@torch.no_grad()
def fit_layer_(layer: nn.Module, pairs: Pairs, *, ridge: float = 1e-4) -> None:
    """In place: the weights (and bias) of `layer` that best map each input `x` of `pairs` to its
    target `y` (the layer's own output shape). Normal equations are accumulated pair by pair in
    float64, so pairs may be chunks of a large sample; `ridge` is relative to the Gram diagonal."""
    if isinstance(layer, nn.Conv2d) and layer.groups != 1:
        raise ModelError(f"fit_layer_: a grouped convolution ({layer.groups} groups) is not one least-squares problem")
    if not isinstance(layer, (nn.Conv2d, nn.Linear)):
        raise ModelError(f"fit_layer_: expected a Conv2d or Linear, got {type(layer).__name__}")
    bias = layer.bias is not None
    gram, cross = None, None
    for x, y in pairs:
        design, wanted = _design(layer, x), _rows(layer, y)
        if bias:
            design = torch.cat([design, torch.ones(design.shape[0], 1, dtype=design.dtype)], dim=1)
        gram = design.T @ design if gram is None else gram + design.T @ design
        cross = design.T @ wanted if cross is None else cross + design.T @ wanted
    if gram is None:
        raise ModelError("fit_layer_: no (input, target) pairs to fit on")
    gram += ridge * gram.diagonal().mean() * torch.eye(gram.shape[0], dtype=gram.dtype)
    solution = torch.linalg.solve(gram, cross)  # (inputs [+1], outputs)
    layer.weight.copy_(solution[: solution.shape[0] - bias].T.reshape(layer.weight.shape).to(layer.weight.dtype))
    if bias:
        layer.bias.copy_(solution[-1].to(layer.bias.dtype))


@torch.no_grad()
def relative_error(function: Callable[[torch.Tensor], torch.Tensor], pairs: Pairs) -> float:
    """||function(x) - y|| / ||y|| over all pairs together."""
    error, energy = 0.0, 0.0
    for x, y in pairs:
        error += float((function(x) - y).pow(2).sum())
        energy += float(y.pow(2).sum())
    return (error / max(energy, 1e-24)) ** 0.5


def _design(layer: nn.Module, features: torch.Tensor) -> torch.Tensor:
    """Rows = output positions, columns = the inputs one output weight multiplies (float64)."""
    if isinstance(layer, nn.Linear):
        return features.reshape(-1, features.shape[-1]).double()
    patches = F.unfold(features, layer.kernel_size, dilation=layer.dilation, padding=layer.padding, stride=layer.stride)
    return patches.transpose(1, 2).reshape(-1, patches.shape[1]).double()


def _rows(layer: nn.Module, targets: torch.Tensor) -> torch.Tensor:
    if isinstance(layer, nn.Linear):
        return targets.reshape(-1, targets.shape[-1]).double()
    return targets.flatten(2).transpose(1, 2).reshape(-1, targets.shape[1]).double()
