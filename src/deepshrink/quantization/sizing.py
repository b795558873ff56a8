"""Bytes a model needs: FP32, and quantised with weights packed at their bit-width."""

from __future__ import annotations

import math

import torch.nn as nn

from deepshrink.quantization.modules import QUANT_LAYERS


def float_bytes(model: nn.Module) -> int:
    """Bytes of the state dict's floating-point tensors at FP32 (counters excluded)."""
    return sum(t.numel() * 4 for t in model.state_dict().values() if t.is_floating_point())


def layer_weight_bytes(layer: nn.Module, bits: int | None = None) -> int:
    """Packed weight codes at `bits` (the layer's own by default) plus one FP32 scale per channel."""
    bits = bits if bits is not None else layer.weight_quant.bits
    return math.ceil(layer.weight.numel() * bits / 8) + 4 * layer.weight_quant.scale.numel()


def quantized_bytes(model: nn.Module) -> dict[str, int]:
    """`weights`: packed codes + scales of quantised layers; `other`: every other float tensor
    (biases, float layers, activation ranges) at 4 bytes; `total`."""
    packed, covered = 0, set()
    for name, layer in model.named_modules():
        if isinstance(layer, QUANT_LAYERS):
            packed += layer_weight_bytes(layer)
            prefix = f"{name}." if name else ""
            covered |= {f"{prefix}weight", f"{prefix}weight_quant.scale"}
    other = sum(t.numel() * 4 for k, t in model.state_dict().items() if t.is_floating_point() and k not in covered)
    return {"weights": packed, "other": other, "total": packed + other}


def layer_bits(model: nn.Module) -> dict[str, int]:
    return {name: m.weight_quant.bits for name, m in model.named_modules() if isinstance(m, QUANT_LAYERS)}

