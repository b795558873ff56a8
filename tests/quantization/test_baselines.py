from __future__ import annotations

import numpy as np
import pytest
import torch

from deepshrink.errors import ExportError
from deepshrink.export import run_onnx
from deepshrink.quantization import ort_quantize_static, torch_x86_int8
from deepshrink.quantization.int8_export import optimized_op_counts
from quant_models import SIZE, normalized


def test_onnx_runtime_static_quantization_baseline(trained, bundle, tmp_path):
    x, y = normalized(bundle.test)
    path = ort_quantize_static(trained, list(x[:128].split(64)), tmp_path / "ort.onnx", SIZE)
    assert (run_onnx(path, x).argmax(1) == y.numpy()).mean() >= 0.98
    assert optimized_op_counts(path, tmp_path / "opt.onnx")["QLinearConv"] == 2
    with pytest.raises(ExportError, match="calibration 'kl' unknown; choose minmax, entropy, percentile"):
        ort_quantize_static(trained, [x[:8]], tmp_path / "x.onnx", SIZE, calibration="kl")


def test_pytorch_x86_int8_path_runs(trained, bundle):
    x, y = normalized(bundle.test)
    int8 = torch_x86_int8(trained, list(x[:128].split(64)))
    with torch.no_grad():
        assert (int8(x).argmax(1) == y).float().mean() >= 0.98
    assert any("quantized" in type(m).__module__ for m in int8.modules())


def test_pytorch_x86_failure_is_reported(trained):
    with pytest.raises(ExportError, match=r"PyTorch x86 int8 path \(torch.ao.quantization FX\) failed"):
        torch_x86_int8(trained, [np.zeros((1, 3))])
