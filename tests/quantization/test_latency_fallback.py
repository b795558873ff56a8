"""Latency-aware float fallback: the kernel graphs it times, the layers it times, and its decision
(the timings themselves are machine facts, measured in benchmarks; here they are stubbed)."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
import torch
import torch.nn as nn

from quant_models import normalized

from deepshrink.export import ort_session
from deepshrink.quantization import METHODS, Method, fallback
from deepshrink.quantization.fallback import (
    LayerTiming,
    conv_input_shapes,
    conv_kernel_graphs,
    latency_fallback,
    layer_timings,
)

SIZE = (3, 12, 12)


@pytest.mark.filterwarnings("ignore:Using padding='same'")  # PyTorch's note on the even kernel
@pytest.mark.parametrize("conv", [nn.Conv2d(3, 16, 3, 2, 1), nn.Conv2d(16, 16, 3, 1, 1, groups=16, bias=False),
                                  nn.Conv2d(8, 24, 1), nn.Conv2d(8, 8, 3, 1, 2, dilation=2), nn.Conv2d(8, 8, 4, padding="same"),
                                  nn.Conv2d(8, 8, 3, padding="valid")],
                         ids=["stem", "depthwise", "pointwise", "dilated", "same-even-kernel", "valid"])
def test_kernel_graphs_run_the_layer(conv, tmp_path):
    x = torch.randn(1, conv.in_channels, 10, 10)
    float_path, int8_path = conv_kernel_graphs(conv, tuple(x.shape), tmp_path)
    (y,) = ort_session(float_path, 1).run(None, {"x": x.numpy()})
    np.testing.assert_allclose(y, conv(x).detach().numpy(), rtol=1e-4, atol=1e-5)
    (q,) = ort_session(int8_path, 1).run(None, {"x": np.zeros(tuple(x.shape), np.uint8)})
    assert q.dtype == np.uint8 and q.shape == y.shape


class SharedHead(nn.Module):
    """One convolution applied to two pyramid levels, like a detector's shared head."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3, 2, 1)
        self.head = nn.Conv2d(8, 4, 1)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.stem(x)
        return self.head(x), self.head(nn.functional.max_pool2d(x, 2))


def test_input_shapes_list_every_call():
    assert conv_input_shapes(SharedHead(), (3, 16, 16)) == {"stem": [(1, 3, 16, 16)], "head": [(1, 8, 8, 8), (1, 8, 4, 4)]}


def test_layer_timings_cover_the_quantised_convolutions(trained):
    timings = layer_timings(trained, SIZE, {"keep_float": ["conv1"]}, budget_s=0.05)
    assert [t.layer for t in timings] == ["conv2"]  # conv1 stays float, fc is not a convolution
    assert timings[0].input_shape == (1, 12, 12, 12) and timings[0].float_ms > 0 and timings[0].int8_ms > 0


def _int8_conv_weights(path) -> int:
    graph = onnx.load(str(path)).graph
    return sum(t.data_type == onnx.TensorProto.INT8 and len(t.dims) == 4 for t in graph.initializer)


@pytest.mark.parametrize("fallback_ms, kept", [(0.9, ("conv2",)), (1.1, ())], ids=["faster", "slower"])
def test_fallback_is_kept_only_when_the_whole_graph_is_faster(trained, bundle, monkeypatch, tmp_path, fallback_ms, kept):
    slow = [LayerTiming("conv1", (1, 3, 12, 12), 0.1, 0.05), LayerTiming("conv2", (1, 12, 12, 12), 0.1, 0.2)]
    monkeypatch.setattr(fallback, "layer_timings", lambda *a, **k: slow)
    monkeypatch.setattr(fallback, "paired_latency_ms", lambda paths, *a, **k: {"int8": 1.0, "fallback": fallback_ms})
    images, _ = normalized(bundle.train)
    result = latency_fallback(trained, images, SIZE, folder=tmp_path)
    assert result.candidates == ("conv2",) and result.keep_float == kept
    assert (result.int8_ms, result.fallback_ms) == (1.0, fallback_ms)
    # what was timed: conv2 left in float in the fallback graph, both convolutions int8 in the other
    assert (_int8_conv_weights(tmp_path / "int8.onnx"), _int8_conv_weights(tmp_path / "fallback.onnx")) == (2, 1)
    assert result.to_dict()["layers"][1] == {"layer": "conv2", "input_shape": (1, 12, 12, 12), "float_ms": 0.1,
                                             "int8_ms": 0.2, "int8_slower": True}


def test_no_slower_layer_means_no_whole_graph_run(trained, monkeypatch):
    monkeypatch.setattr(fallback, "layer_timings", lambda *a, **k: [LayerTiming("conv2", (1, 12, 12, 12), 0.2, 0.1)])
    monkeypatch.setattr(fallback, "paired_latency_ms", lambda *a, **k: pytest.fail("whole graph timed"))
    result = latency_fallback(trained, torch.randn(8, *SIZE), SIZE)
    assert result.keep_float == () and result.candidates == () and result.int8_ms is None


def test_a_qat_config_is_timed_without_training(trained, monkeypatch, tmp_path):
    monkeypatch.setattr(fallback, "layer_timings", lambda *a, **k: [LayerTiming("conv2", (1, 12, 12, 12), 0.1, 0.2)])
    monkeypatch.setattr(fallback, "paired_latency_ms", lambda paths, *a, **k: {"int8": 1.0, "fallback": 0.5})
    monkeypatch.setitem(METHODS, Method.QAT, lambda *a, **k: pytest.fail("QAT ran"))
    config = {"method": "qat", "bits": 4, "keep_float": ["conv1"]}
    result = latency_fallback(trained, torch.randn(16, *SIZE), SIZE, config, folder=tmp_path)
    assert result.keep_float == ("conv2",)
    assert _int8_conv_weights(tmp_path / "fallback.onnx") == 0  # conv1 from the config, conv2 from the fallback
