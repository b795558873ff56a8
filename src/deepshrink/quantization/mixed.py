"""Mixed precision: per-layer weight bit-widths chosen from measured sensitivity to fit a size
budget (activations stay at the config's bit-width).

Sensitivity of layer l at b bits = KL divergence of the network's output distribution when only
layer l's weights are quantised to b bits (per-channel, MSE-optimal clipping), measured on the
calibration batches. Allocation is greedy (HAQ/HAWQ-style knapsack relaxation): start every
layer at the highest candidate and repeatedly take the cheapest step down - least added
sensitivity per byte saved - until the packed weights fit the budget."""

from __future__ import annotations

import math
import os
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F

from deepshrink.errors import BudgetError, ConfigError
from deepshrink.quantization.api import QuantizeResult, quantize
from deepshrink.quantization.calibrate import calibration_batches, run_batches
from deepshrink.quantization.config import QuantizeConfig, WeightQuantizer
from deepshrink.quantization.folding import fold_bn
from deepshrink.quantization.modules import QUANT_OF
from deepshrink.quantization.weight_quant import build_weight_quant

CANDIDATES = (8, 6, 4, 3, 2)


def _kl(reference: torch.Tensor, output: torch.Tensor) -> float:
    return float(F.kl_div(F.log_softmax(output, 1), F.log_softmax(reference, 1), log_target=True, reduction="batchmean"))


@torch.no_grad()
def layer_sensitivity(model: nn.Module, batches: list[torch.Tensor], candidates: tuple[int, ...] = CANDIDATES) -> dict[str, dict[int, float]]:
    """{layer: {bits: KL}} for every conv/linear layer of the (BN-folded) float `model`."""
    reference = run_batches(model, batches)
    result: dict[str, dict[int, float]] = {}
    for name, layer in model.named_modules():
        if type(layer) not in QUANT_OF:
            continue
        original = layer.weight.detach().clone()
        result[name] = {}
        for bits in candidates:
            quant = build_weight_quant(WeightQuantizer.MSE, bits, original.shape[0], per_channel=True)
            quant.init(original)
            layer.weight.copy_(quant.eval()(original))
            result[name][bits] = _kl(reference, run_batches(model, batches))
        layer.weight.copy_(original)
    return result


def allocate_bits(sensitivity: dict[str, dict[int, float]], numels: dict[str, int], budget_bytes: int) -> dict[str, int]:
    """The greedy allocation (see module docstring); BudgetError when even the lowest candidate
    for every layer does not fit."""
    bits = {name: max(options) for name, options in sensitivity.items()}

    def size(allocation: dict[str, int]) -> int:
        return sum(math.ceil(numels[n] * b / 8) for n, b in allocation.items())

    floor = size({n: min(options) for n, options in sensitivity.items()})
    if floor > budget_bytes:
        raise BudgetError(f"size budget {budget_bytes} bytes cannot be met: the smallest allocation "
                          f"({min(min(o) for o in sensitivity.values())} bits everywhere) needs {floor} bytes")
    while size(bits) > budget_bytes:
        best, best_cost = None, math.inf
        for name, options in sensitivity.items():
            lower = [b for b in options if b < bits[name]]
            if not lower:
                continue
            step = max(lower)
            saved = math.ceil(numels[name] * bits[name] / 8) - math.ceil(numels[name] * step / 8)
            cost = (options[step] - options[bits[name]]) / max(saved, 1)
            if cost < best_cost:
                best, best_cost = (name, step), cost
        bits[best[0]] = best[1]
    return bits


def mixed_precision(
    model: nn.Module,
    calibration_data: Any,
    *,
    budget: float,
    candidates: tuple[int, ...] = CANDIDATES,
    config: QuantizeConfig | dict[str, Any] | None = None,
    onnx_path: str | os.PathLike | None = None,
) -> QuantizeResult:
    """Quantise with per-layer weight bits so the packed weights take at most `budget` x their
    FP32 bytes (e.g. 0.15: about 4.8 bits on average). The report gains `sensitivity`; with
    `onnx_path` the int8 graph is written (sub-8-bit weights ride in int8 containers)."""
    if not 0 < budget <= 1:
        raise ConfigError(f"budget: a fraction of the FP32 weight bytes in (0, 1], got {budget!r}")
    config = QuantizeConfig.coerce(config)
    batches = calibration_batches(calibration_data, min(config.calibration_size, 256), config.advanced.calibration_batch_size)
    folded = fold_bn(model).eval()
    sensitivity = layer_sensitivity(folded, batches, tuple(sorted(set(candidates), reverse=True)))
    numels = {name: folded.get_submodule(name).weight.numel() for name in sensitivity}
    budget_bytes = int(budget * 4 * sum(numels.values()))
    allocation = allocate_bits(sensitivity, numels, budget_bytes)
    options = {**config.model_dump(exclude_unset=True), "layer_bits": allocation, "first_last_bits": None}
    options.setdefault("weight", WeightQuantizer.MSE if config.method.value == "ptq" else config.weight)
    result = quantize(model, calibration_data, config=options, onnx_path=onnx_path)
    result.report.update(sensitivity={n: {str(b): v for b, v in s.items()} for n, s in sensitivity.items()},
                         budget_bytes=budget_bytes, weight_bytes=sum(math.ceil(numels[n] * b / 8) for n, b in result.report["layer_bits"].items()))
    return result
