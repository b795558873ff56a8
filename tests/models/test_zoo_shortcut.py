"""The option-A shortcut: exact maths, the pooled (ncnn) form, and what pruning relies on."""

from __future__ import annotations

import onnx
import onnx.numpy_helper
import pytest
import torch

from deepshrink.errors import ModelError
from deepshrink.models import create_model
from deepshrink.models.zoo import ChannelPadShortcut, use_pooled_shortcuts_


def test_subsamples_then_pads_channels_with_zeros() -> None:
    x = torch.randn(2, 16, 7, 7)
    out = ChannelPadShortcut(2, 8, 8)(x)
    assert out.shape == (2, 32, 4, 4)
    assert torch.equal(out[:, 8:24], x[:, :, ::2, ::2])
    assert out[:, :8].abs().sum() == 0 and out[:, 24:].abs().sum() == 0


@pytest.mark.parametrize("size", [8, 7, 1])
def test_pooled_subsampling_is_identical(size: int) -> None:
    x = torch.randn(2, 5, size, size)
    assert torch.equal(ChannelPadShortcut(2, 3, 1, pool=True)(x), ChannelPadShortcut(2, 3, 1)(x))


def test_pad_widths_are_plain_ints_read_at_call_time() -> None:
    model = create_model("resnet20")
    shortcuts = {n: m for n, m in model.named_modules() if isinstance(m, ChannelPadShortcut)}
    assert sorted(shortcuts) == ["layer2.0.shortcut", "layer3.0.shortcut"]
    first = shortcuts["layer2.0.shortcut"]
    assert (first.stride, first.pad_front, first.pad_back) == (2, 8, 8)
    assert all(type(v) is int for v in (first.stride, first.pad_front, first.pad_back))
    # What pruning does after keeping 12 of 16 input channels: widen the pads to keep 32 outputs.
    first.pad_front, first.pad_back = 10, 10
    assert first(torch.randn(1, 12, 32, 32)).shape == (1, 32, 16, 16)


def strided_slices(path) -> int:
    """ONNX Slice nodes with a step other than ±1, i.e. image subsampling (ncnn has no such op)."""
    graph = onnx.load(str(path)).graph
    constants = {
        n.output[0]: onnx.numpy_helper.to_array(n.attribute[0].t) for n in graph.node if n.op_type == "Constant"
    }
    constants |= {t.name: onnx.numpy_helper.to_array(t) for t in graph.initializer}
    steps = [constants[n.input[4]] for n in graph.node if n.op_type == "Slice" and len(n.input) == 5]
    return sum(bool((abs(s) != 1).any()) for s in steps)


def test_use_pooled_shortcuts_keeps_outputs_and_removes_strided_slices(calibrated, tmp_path) -> None:
    model = calibrated(create_model("resnet20"))
    x = torch.randn(2, 3, 32, 32)
    torch.onnx.export(model, x, tmp_path / "sliced.onnx", dynamo=False, opset_version=17)
    with torch.no_grad():
        before = model(x)
        use_pooled_shortcuts_(model)
        after = model(x)
    assert torch.equal(before, after)
    traced = torch.fx.symbolic_trace(model)
    assert sum(n.target is torch.nn.functional.max_pool2d for n in traced.graph.nodes) == 2
    torch.onnx.export(model, x, tmp_path / "pooled.onnx", dynamo=False, opset_version=17)
    assert strided_slices(tmp_path / "sliced.onnx") == 4  # two shortcuts, one Slice per spatial axis
    assert strided_slices(tmp_path / "pooled.onnx") == 0
    assert sum(n.op_type == "MaxPool" for n in onnx.load(str(tmp_path / "pooled.onnx")).graph.node) == 2


def test_fx_graph_exposes_the_pad_for_pruning() -> None:
    traced = torch.fx.symbolic_trace(create_model("resnet32"))
    pads = [n for n in traced.graph.nodes if n.target is torch.nn.functional.pad]
    assert len(pads) == 2
    assert pads[0].args[1] == (0, 0, 0, 0, 8, 8) and pads[1].args[1] == (0, 0, 0, 0, 16, 16)


@pytest.mark.parametrize(
    ("args", "field"),
    [((0, 8, 8), "stride"), ((2, -1, 8), "pad_front"), ((2, 8, 1.5), "pad_back"), ((True, 8, 8), "stride")],
)
def test_bad_arguments_name_the_field(args: tuple, field: str) -> None:
    with pytest.raises(ModelError, match=f"ChannelPadShortcut: {field} must be an int"):
        ChannelPadShortcut(*args)
