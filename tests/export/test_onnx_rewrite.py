"""Exact ONNX rewrites for ONNX Runtime: a per-channel constant add becomes a depthwise 1x1 conv."""

from __future__ import annotations

import onnx
import pytest
import torch
import torch.nn as nn

from deepshrink.export import export_onnx, run_onnx


class _ChannelShift(nn.Module):
    """conv -> + per-channel constant (what a dropped residual branch leaves) -> ReLU, plus adds that must stay."""

    def __init__(self, constant_shape: tuple[int, ...]) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.shift = nn.Parameter(torch.randn(constant_shape))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.conv(x) + self.shift) + 0.5


def _ops(path) -> list[str]:
    return [n.op_type for n in onnx.load(str(path)).graph.node]


def test_a_per_channel_constant_add_exports_as_a_depthwise_conv_with_the_same_output(tmp_path):
    model = _ChannelShift((1, 4, 1, 1)).eval()
    path = export_onnx(model, tmp_path / "m.onnx", (3, 8, 8))
    graph = onnx.load(str(path)).graph
    convs = [n for n in graph.node if n.op_type == "Conv"]
    assert len(convs) == 2 and onnx.helper.get_attribute_value(next(a for a in convs[1].attribute if a.name == "group")) == 4
    assert _ops(path).count("Add") == 1  # the scalar + 0.5 is not a per-channel constant: it stays
    x = torch.randn(2, 3, 8, 8)
    with torch.no_grad():
        torch.testing.assert_close(torch.from_numpy(run_onnx(path, x.numpy())), model(x), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("shape", [(1, 1, 8, 8), (4, 1, 1), (1, 4, 8, 1)])
def test_other_constant_adds_are_left_alone(tmp_path, shape):
    path = export_onnx(_ChannelShift(shape).eval(), tmp_path / "m.onnx", (3, 8, 8))
    assert _ops(path).count("Conv") == 1 and _ops(path).count("Add") == 2
