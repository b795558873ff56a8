"""8-bit weights on the 7-bit grid where ONNX Runtime's x86 int8 kernels would saturate."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
import torch
from onnx import numpy_helper

import deepshrink
from deepshrink.export import run_onnx
from deepshrink.quantization import cpu
from quant_models import normalized


def weight_codes(path) -> list[np.ndarray]:
    graph = onnx.load(str(path)).graph
    return [numpy_helper.to_array(t) for t in graph.initializer if t.data_type == onnx.TensorProto.INT8 and len(t.dims) >= 2]


@pytest.mark.parametrize("reduce_range, largest", [(True, 63), (False, 127)])
def test_reduce_range_puts_8_bit_weights_on_the_7_bit_grid(trained, bundle, tmp_path, reduce_range, largest):
    result = deepshrink.quantize(trained, bundle, config={"advanced": {"reduce_range": reduce_range}},
                                 onnx_path=tmp_path / "m.onnx")
    assert result.report["reduce_range"] is reduce_range
    assert set(result.report["layer_bits"].values()) == {7 if reduce_range else 8}
    codes = weight_codes(result.onnx_path)
    assert len(codes) == 3 and max(int(np.abs(c).max()) for c in codes) == largest  # per-channel: the max is hit
    x, _ = normalized(bundle.test)
    with torch.no_grad():
        fake = result.model(x).numpy()
    assert (run_onnx(result.onnx_path, x).argmax(1) == fake.argmax(1)).mean() >= 0.99


@pytest.mark.parametrize("saturates", [True, False])
def test_the_default_follows_this_cpu(trained, bundle, monkeypatch, saturates):
    monkeypatch.setattr("deepshrink.quantization.prepare.int8_dot_saturates", lambda: saturates)
    result = deepshrink.quantize(trained, bundle)
    assert result.report["reduce_range"] is saturates
    assert result.report["layer_bits"]["conv2"] == (7 if saturates else 8)


def test_sub_8_bit_weights_are_left_as_they_are(trained, bundle):
    result = deepshrink.quantize(trained, bundle, config={"layer_bits": {"conv2": 4}, "advanced": {"reduce_range": True}})
    assert result.report["layer_bits"] == {"conv1": 7, "conv2": 4, "fc": 7}


@pytest.mark.parametrize("machine, flags, saturates", [
    ("x86_64", frozenset({"avx2", "fma"}), True),
    ("x86_64", frozenset({"avx2", "avx512f", "avx512_vnni"}), False),
    ("x86_64", frozenset({"avx2", "avx_vnni"}), False),
    ("AMD64", None, True),  # flags unknown (no /proc/cpuinfo): assume the older kernels
    ("aarch64", frozenset({"asimd", "asimddp"}), False),
])
def test_saturation_is_read_from_the_cpu_flags(monkeypatch, machine, flags, saturates):
    monkeypatch.setattr(cpu.platform, "machine", lambda: machine)
    monkeypatch.setattr(cpu, "cpu_flags", lambda: flags)
    assert cpu.int8_dot_saturates.__wrapped__() is saturates
