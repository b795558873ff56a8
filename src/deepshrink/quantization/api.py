"""The `quantize` verb: BN folding -> (equalisation) -> quantiser placement -> calibration ->
(bias correction) -> (QAT) -> optional int8 ONNX export, recorded as transform "quantize"."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn

from deepshrink.models.spec import TRANSFORMS, derive, spec_of
from deepshrink.quantization.bias_correction import correct_bias
from deepshrink.quantization.calibrate import calibrate, calibration_batches, run_batches
from deepshrink.quantization.config import Method, QuantizeConfig
from deepshrink.quantization.equalization import equalize
from deepshrink.quantization.folding import fold_bn_layers
from deepshrink.quantization.graph import trace
from deepshrink.quantization.prepare import apply_plan, make_plan, record_signs
from deepshrink.quantization.primitives import sqnr_db
from deepshrink.quantization.qat import run_qat
from deepshrink.quantization.sizing import float_bytes, layer_bits, quantized_bytes


@dataclass
class QuantizeResult:
    """The fake-quant model (eval mode; save it with `deepshrink.save_model`), the int8 ONNX file
    when one was asked for, and a JSON-ready report."""

    model: nn.Module
    onnx_path: Path | None = None
    report: dict[str, Any] = field(default_factory=dict)


def _ptq(model: nn.Module, data: Any, config: QuantizeConfig, teacher: nn.Module, **_: Any) -> tuple[nn.Module, list[dict]]:
    return model, []


# Method -> what happens after calibration (PTQ: nothing; QAT: fine-tuning on the engine).
METHODS: dict[Method, Callable[..., tuple[nn.Module, list[dict]]]] = {Method.PTQ: _ptq, Method.QAT: run_qat}


def prepare_model(model: nn.Module, config: QuantizeConfig, batches: list[torch.Tensor]) -> tuple[nn.Module, nn.Module, dict]:
    """(float base after folding/equalisation, calibrated fake-quant model, plan); the plan's
    "bn_folded" names the layers a BatchNorm was folded into."""
    base, folded = fold_bn_layers(model, config.advanced.untie_shared) if config.advanced.fold_bn else (trace(model), [])
    if config.advanced.equalize:
        base = equalize(base)
    graph_module = trace(base)
    plan = make_plan(graph_module, config) | {"bn_folded": folded}
    quantized = apply_plan(graph_module, plan)
    calibrate(quantized, batches, config.observer, config.advanced)
    if config.advanced.bias_correction:
        correct_bias(quantized, batches)
    return base, quantized, plan


def quantize(
    model: nn.Module,
    calibration_data: Any,
    *,
    method: str | Method | None = None,
    bits: int | None = None,
    observer: str | None = None,
    config: QuantizeConfig | dict[str, Any] | None = None,
    onnx_path: str | os.PathLike | None = None,
    input_size: tuple[int, ...] | None = None,
    train_dir: str | os.PathLike | None = None,
    resume: bool = False,
    teacher: nn.Module | None = None,
) -> QuantizeResult:
    """Quantise `model` (W8A8 post-training quantisation by default).

    `calibration_data`: normalised images [N, C, H, W], an iterable of batches, or a DataBundle
    (required for method "qat", which trains on it). `method`, `bits` and `observer` override the
    same fields of `config` (a QuantizeConfig or dict). With `onnx_path`, the int8 QDQ ONNX graph
    is written there (input size from the model's spec, else from the calibration images).
    QAT checkpoints every epoch into `train_dir` when given; `resume=True` continues from there
    (calibration is deterministic, so the resumed run trains the same fake-quant model).
    `teacher`: the model QAT distils from when `advanced.distill_weight` > 0 (default: `model`
    itself; progressive quantisation passes the float model, see quantization.progressive).
    With `config.progressive`, QAT runs at those higher bit-widths first, each from the last one's
    latent weights (their checkpoints in `train_dir`/stageN-wB), and the report lists the stages."""
    overrides = {k: v for k, v in {"method": method, "bits": bits, "observer": observer}.items() if v is not None}
    config = QuantizeConfig.coerce(config, **overrides)
    if config.progressive:
        from deepshrink.quantization.progressive import quantize_progressively

        return quantize_progressively(model, calibration_data, config, onnx_path=onnx_path, input_size=input_size,
                                      train_dir=train_dir, resume=resume, teacher=teacher)
    return quantize_once(model, calibration_data, config, onnx_path=onnx_path, input_size=input_size,
                         train_dir=train_dir, resume=resume, teacher=teacher)


def quantize_once(model: nn.Module, calibration_data: Any, config: QuantizeConfig, *,
                  onnx_path: str | os.PathLike | None = None, input_size: tuple[int, ...] | None = None,
                  train_dir: str | os.PathLike | None = None, resume: bool = False,
                  teacher: nn.Module | None = None) -> QuantizeResult:
    """`quantize` at one bit-width (the progressive stages of `config` are the caller's)."""
    batches = calibration_batches(calibration_data, config.calibration_size, config.advanced.calibration_batch_size)
    fallback = None
    if config.advanced.latency_fallback:
        from deepshrink.quantization.fallback import latency_fallback  # it quantises through this function

        fallback = latency_fallback(model, batches, tuple(input_size or batches[0].shape[1:]), config,
                                    threads=torch.get_num_threads())
        config = QuantizeConfig.coerce(config, keep_float=(*config.keep_float, *fallback.keep_float))
    base, quantized, plan = prepare_model(model, config, batches)
    quantized, history = METHODS[config.method](quantized, calibration_data, config,
                                                base if teacher is None else teacher.eval(),
                                                folded=plan["bn_folded"], batches=batches,
                                                train_dir=train_dir, resume=resume)
    quantized.eval()
    record_signs(quantized, plan)
    plan["config"] = config.model_dump(mode="json")
    quantized = derive(base, quantized, "quantize", plan)
    report = _report(base, quantized, config, batches, plan)
    if history:
        report["qat_history"] = history
    if fallback is not None:
        report["latency_fallback"] = fallback.to_dict()
    path = None
    if onnx_path is not None:
        from deepshrink.quantization.int8_export import export_int8_onnx

        if input_size is None and spec_of(quantized) is None:  # no spec: the calibration images tell
            input_size = tuple(batches[0].shape[1:])
        path = export_int8_onnx(quantized, onnx_path, input_size)
        report["onnx_bytes"] = path.stat().st_size
    return QuantizeResult(quantized, path, report)


def _report(base: nn.Module, quantized: nn.Module, config: QuantizeConfig, batches: list[torch.Tensor], plan: dict) -> dict[str, Any]:
    reference, output = run_batches(base, batches), run_batches(quantized, batches)
    sizes = quantized_bytes(quantized)
    report = {
        "method": config.method.value,
        "weight": config.weight.value,
        "activation": config.activation.value,
        "bits": config.bits,
        "act_bits": config.act_bits,
        "residual_bits": config.residual_bits,
        "observer": config.observer.value,
        "calibration_images": sum(b.shape[0] for b in batches),
        "layer_bits": layer_bits(quantized),
        "reduce_range": plan["reduce_range"],
        "float_layers": list(plan["float"]),
        "fp32_bytes": float_bytes(base),
        "quantized_bytes": sizes["total"],
        "compression": float_bytes(base) / max(sizes["total"], 1),
        "logits_sqnr_db": sqnr_db(reference, output),
        "calibration_top1_agreement": float((reference.argmax(1) == output.argmax(1)).float().mean()),
    }
    return report


@TRANSFORMS.register("quantize")
def _replay_quantize(model: nn.Module, plan: dict) -> nn.Module:
    """Rebuild the fake-quant architecture; scales and weights come from the saved state dict."""
    return apply_plan(trace(model), plan, init=False)
