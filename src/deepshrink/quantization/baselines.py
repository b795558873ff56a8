"""Peer int8 paths we compare against: ONNX Runtime's own static quantiser (quantize_static, QDQ,
its calibration) and PyTorch's x86 int8 path (torch.ao.quantization FX graph mode; deprecated
upstream, still runs in torch 2.13)."""

from __future__ import annotations

import copy
import os
import tempfile
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn

from deepshrink.errors import ExportError
from deepshrink.export import INPUT_NAME, export_onnx
from deepshrink.export.common import first_line
from deepshrink.quantization.cpu import int8_dot_saturates

ORT_CALIBRATION = ("minmax", "entropy", "percentile")


class _Reader:
    """onnxruntime.quantization.CalibrationDataReader over our calibration batches."""

    def __init__(self, batches: Sequence[torch.Tensor]) -> None:
        self._batches = [b.detach().cpu().numpy().astype(np.float32) for b in batches]
        self._iter: Iterator[np.ndarray] = iter(self._batches)

    def get_next(self) -> dict[str, np.ndarray] | None:
        batch = next(self._iter, None)
        return None if batch is None else {INPUT_NAME: batch}

    def rewind(self) -> None:
        self._iter = iter(self._batches)


def ort_quantize_static(
    model: nn.Module,
    batches: Sequence[torch.Tensor],
    path: str | os.PathLike,
    input_size: Sequence[int] | None = None,
    *,
    calibration: str = "minmax",
    reduce_range: bool | None = None,
) -> Path:
    """Export the float `model` and let ONNX Runtime quantise it (QDQ, per-channel int8 weights,
    uint8 activations, its own calibration on `batches`). The peer baseline for our export.
    `reduce_range` (7-bit weights, as ONNX Runtime's docs advise on CPUs without VNNI) defaults, as
    ours does, to whether this CPU would saturate."""
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

    methods = {"minmax": CalibrationMethod.MinMax, "entropy": CalibrationMethod.Entropy,
               "percentile": CalibrationMethod.Percentile}
    if calibration not in methods:
        raise ExportError(f"ONNX Runtime calibration '{calibration}' unknown; choose {', '.join(ORT_CALIBRATION)}")
    path = Path(path)
    with tempfile.TemporaryDirectory() as tmp:
        float_path = export_onnx(model, Path(tmp) / "float.onnx", input_size)
        try:
            quantize_static(
                str(float_path), str(path), _Reader(batches), quant_format=QuantFormat.QDQ, per_channel=True,
                activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8, calibrate_method=methods[calibration],
                reduce_range=int8_dot_saturates() if reduce_range is None else reduce_range,
            )
        except Exception as exc:
            raise ExportError(f"onnxruntime.quantization.quantize_static failed: {first_line(exc)}") from None
    return path


def torch_x86_int8(model: nn.Module, batches: Sequence[torch.Tensor]) -> nn.Module:
    """PyTorch's x86 int8 model (FX graph mode: prepare_fx -> calibrate -> convert_fx) for the
    float `model`; raises ExportError with PyTorch's message where that path no longer works."""
    try:
        from torch.ao.quantization import get_default_qconfig_mapping
        from torch.ao.quantization.quantize_fx import convert_fx, prepare_fx

        torch.backends.quantized.engine = "x86"
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # deprecation notices on every call
            float_model = copy.deepcopy(model).eval()
            prepared = prepare_fx(float_model, get_default_qconfig_mapping("x86"), (batches[0][:1],))
            with torch.no_grad():
                for batch in batches:
                    prepared(batch)
            return convert_fx(prepared)
    except Exception as exc:  # ImportError, NotImplementedError, RuntimeError from the deprecated stack
        raise ExportError(f"PyTorch x86 int8 path (torch.ao.quantization FX) failed: {first_line(exc)}") from None
