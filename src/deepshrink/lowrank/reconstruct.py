"""Data-aware refinement of decomposed layers. A decomposition fits the weight tensor; what matters
is the layer's output on real inputs, after earlier layers were decomposed too. So each decomposed
layer's last factor (a plain convolution or linear, linear in its weights) is refit by ridge least
squares: on the inputs it now receives in the decomposed model, reproduce what the original layer
produced in the original model. Layers go in forward order, so each also absorbs the errors of
those before it - the reconstruction step of channel pruning (He et al. 2017, ThiNet) applied to
low-rank factors. The BatchNorm after a layer then sees the statistics it was trained with."""

from __future__ import annotations

from collections.abc import Iterable
from contextlib import contextmanager

import torch
import torch.nn as nn
import torch.nn.functional as F

from deepshrink.errors import ConfigError, ModelError

CHUNK = 64  # images per pass: bounds the memory of the captured activations


def decomposed_layer_names(model: nn.Module) -> list[str]:
    """The layers the last "decompose" transform of `model` replaced, in its plan's order."""
    spec = getattr(model, "deepshrink_spec", None)
    plans = [t for t in (spec.transforms if spec else []) if t.get("kind") == "decompose"]
    if not plans:
        raise ModelError("reconstruct: the model carries no decomposition plan (decompose it with deepshrink.decompose)")
    return [layer["name"] for layer in plans[-1]["plan"]["layers"]]


@torch.no_grad()
def reconstruct_(model: nn.Module, original: nn.Module, images: torch.Tensor, *, names: Iterable[str] | None = None,
                 ridge: float = 1e-4) -> dict[str, dict[str, float]]:
    """In place: refit the last factor of every decomposed layer of `model` (see the module
    docstring) on `images` (normalised inputs, e.g. 256 training images). Both models run in eval
    mode. Returns, per layer, the relative output error before and after."""
    if images.ndim < 2 or images.shape[0] == 0:
        raise ConfigError(f"reconstruct: images must be a non-empty batch, got shape {tuple(images.shape)}")
    if ridge < 0:
        raise ConfigError(f"reconstruct: ridge must be >= 0, got {ridge}")
    model.eval()
    original.eval()
    report = {}
    for name in names if names is not None else decomposed_layer_names(model):
        seq, reference = model.get_submodule(name), original.get_submodule(name)
        if not isinstance(seq, nn.Sequential) or not isinstance(seq[-1], (nn.Conv2d, nn.Linear)):
            raise ModelError(f"reconstruct: layer '{name}' is not a decomposed sequence ending in a conv or linear")
        if isinstance(seq[-1], nn.Conv2d) and seq[-1].groups != 1:
            continue  # a grouped last factor is not one least-squares problem; left as decomposed
        inputs = _captured(model, seq, images, want="input")
        targets = _captured(original, reference, images, want="output")
        report[name] = _refit(seq, inputs, targets, ridge)
    return report


def _captured(model: nn.Module, layer: nn.Module, images: torch.Tensor, *, want: str) -> torch.Tensor:
    """What enters (`want="input"`) or leaves `layer` when `model` runs on `images`, in chunks."""
    parts = []
    with _capture(layer, parts, want):
        for chunk in images.split(CHUNK):
            model(chunk)
    return torch.cat(parts)


@contextmanager
def _capture(layer: nn.Module, store: list, want: str):
    def hook(_module, args, output):
        store.append((args[0] if want == "input" else output).detach())

    handle = layer.register_forward_hook(hook)
    try:
        yield
    finally:
        handle.remove()


def _refit(seq: nn.Sequential, inputs: torch.Tensor, targets: torch.Tensor, ridge: float) -> dict[str, float]:
    last, bias = seq[-1], seq[-1].bias is not None
    before = _relative_error(seq, inputs, targets)
    gram, cross = None, None
    for x, y in zip(inputs.split(CHUNK), targets.split(CHUNK)):  # normal equations, a chunk at a time
        design, wanted = _design(last, seq[:-1](x)), _rows(last, y)
        if bias:
            design = torch.cat([design, torch.ones(design.shape[0], 1, dtype=design.dtype)], dim=1)
        gram = design.T @ design if gram is None else gram + design.T @ design
        cross = design.T @ wanted if cross is None else cross + design.T @ wanted
    gram += ridge * gram.diagonal().mean() * torch.eye(gram.shape[0], dtype=gram.dtype)
    solution = torch.linalg.solve(gram, cross)  # (inputs [+1], outputs)
    previous = [p.clone() for p in (last.weight, last.bias) if p is not None]
    last.weight.copy_(solution[: solution.shape[0] - bias].T.reshape(last.weight.shape).to(last.weight.dtype))
    if bias:
        last.bias.copy_(solution[-1].to(last.bias.dtype))
    after = _relative_error(seq, inputs, targets)
    if not after <= before:  # ridge least squares cannot lose on its own data unless ill-posed: keep the old
        for param, old in zip((last.weight, last.bias), previous):
            param.copy_(old)
        after = before
    return {"error_before": before, "error_after": after}


def _design(last: nn.Module, features: torch.Tensor) -> torch.Tensor:
    """Rows = output positions, columns = the inputs one output weight multiplies (float64)."""
    if isinstance(last, nn.Linear):
        return features.reshape(-1, features.shape[-1]).double()
    patches = F.unfold(features, last.kernel_size, dilation=last.dilation, padding=last.padding, stride=last.stride)
    return patches.transpose(1, 2).reshape(-1, patches.shape[1]).double()


def _rows(last: nn.Module, targets: torch.Tensor) -> torch.Tensor:
    if isinstance(last, nn.Linear):
        return targets.reshape(-1, targets.shape[-1]).double()
    return targets.flatten(2).transpose(1, 2).reshape(-1, targets.shape[1]).double()


def _relative_error(seq: nn.Sequential, inputs: torch.Tensor, targets: torch.Tensor) -> float:
    error = sum(float((seq(x) - y).pow(2).sum()) for x, y in zip(inputs.split(CHUNK), targets.split(CHUNK)))
    return (error / max(float(targets.pow(2).sum()), 1e-24)) ** 0.5
