"""Empirical bias correction (Banner et al. 2019; Nagel et al. 2019, §4.2).

Quantising a layer's weights shifts the mean of its outputs by E[(W_q - W) x] per channel; that
shift is a bias error every later layer inherits. Over the calibration set we measure it on the
layer's actual (quantised) inputs and subtract it from the bias."""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from deepshrink.quantization.modules import QUANT_LAYERS


def _float_output(layer: nn.Module, x: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    if isinstance(layer, nn.Linear):
        return F.linear(x, layer.weight, bias)
    return layer._conv_forward(x, layer.weight, bias)


def _channel_mean(y: torch.Tensor) -> torch.Tensor:
    """Mean over every axis but the channel axis (1 for conv outputs, last for linear)."""
    if y.dim() == 2:
        return y.mean(dim=0)
    return y.transpose(0, 1).reshape(y.shape[1], -1).mean(dim=1)


@torch.no_grad()
def correct_bias(model: nn.Module, batches: list[torch.Tensor]) -> dict[str, float]:
    """Subtract each quantised layer's mean output shift from its bias, in place (layers without
    a bias are skipped: adding one would change the saved architecture). Returns the largest
    absolute correction per layer."""
    layers = {name: m for name, m in model.named_modules() if isinstance(m, QUANT_LAYERS) and m.bias is not None}
    sums = {name: torch.zeros_like(m.bias) for name, m in layers.items()}
    counts = dict.fromkeys(layers, 0)

    def hook(name: str):
        def record(layer: nn.Module, inputs: tuple[torch.Tensor, ...], output: torch.Tensor) -> None:
            reference = _float_output(layer, inputs[0], layer.quantized_bias())
            sums[name] += _channel_mean(output - reference) * inputs[0].shape[0]
            counts[name] += inputs[0].shape[0]

        return record

    handles = [layer.register_forward_hook(hook(name)) for name, layer in layers.items()]
    training = model.training
    model.eval()
    try:
        for images in batches:
            model(images)
    finally:
        for handle in handles:
            handle.remove()
        model.train(training)
    corrections = {}
    for name, layer in layers.items():
        if counts[name]:
            shift = sums[name] / counts[name]
            layer.bias.sub_(shift)
            corrections[name] = float(shift.abs().max())
    return corrections
