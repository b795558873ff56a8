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
from deepshrink.errors import ConfigError, ModelError
from deepshrink.layerfit import fit_layer_, relative_error

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
    last = seq[-1]
    before = relative_error(seq, zip(inputs.split(CHUNK), targets.split(CHUNK)))
    previous = [p.clone() for p in (last.weight, last.bias) if p is not None]
    fit_layer_(last, ((seq[:-1](x), y) for x, y in zip(inputs.split(CHUNK), targets.split(CHUNK))), ridge=ridge)
    after = relative_error(seq, zip(inputs.split(CHUNK), targets.split(CHUNK)))
    if not after <= before:  # ridge least squares cannot lose on its own data unless ill-posed: keep the old
        for param, old in zip((last.weight, last.bias), previous):
            param.copy_(old)
        after = before
    return {"error_before": before, "error_after": after}
