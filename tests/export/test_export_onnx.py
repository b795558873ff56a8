from __future__ import annotations

import numpy as np
import onnx
import pytest
import torch
import torch.nn as nn

import deepshrink
from deepshrink.errors import ConfigError, ExportError, ModelError, UnknownNameError
from deepshrink.export import (
    INPUT_NAME,
    OUTPUT_NAME,
    check_onnx_matches,
    export,
    export_onnx,
    onnx_spec,
    ort_session,
    run_onnx,
)
from deepshrink.models import ModelSpec, attach_spec

SIZE = (3, 8, 8)


class FFTModel(nn.Module):
    """Uses aten::fft_fft2, which the TorchScript ONNX exporter has no symbolic for."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(3, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.fft.fft2(x).abs().mean(dim=(2, 3)))


class FrozenScalarModel(nn.Module):
    """Reads a tensor value into Python: the trace bakes in the value seen at export time."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(3, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        scale = float(x.abs().sum())
        return self.fc(x.mean(dim=(2, 3))) * scale


def test_ort_matches_pytorch_for_batch_1_and_5(cnn, tmp_path):
    path = export_onnx(cnn, tmp_path / "cnn.onnx", SIZE)
    session = ort_session(path, threads=1)
    cnn.eval()
    for batch in (1, 5):
        x = torch.randn(batch, *SIZE)
        with torch.no_grad():
            expected = cnn(x).numpy()
        got = run_onnx(session, x)
        assert got.shape == (batch, 4)
        np.testing.assert_allclose(got, expected, atol=1e-5, rtol=0)


def test_graph_names_dynamic_batch_and_opset(cnn, tmp_path):
    graph = onnx.load(export_onnx(cnn, tmp_path / "m.onnx", SIZE, opset=17))
    (inp,), (out,) = graph.graph.input, graph.graph.output
    assert (inp.name, out.name) == (INPUT_NAME, OUTPUT_NAME) == ("input", "logits")
    assert inp.type.tensor_type.shape.dim[0].dim_param == "batch"
    assert [d.dim_value for d in inp.type.tensor_type.shape.dim[1:]] == list(SIZE)
    assert graph.opset_import[0].version == 17


def test_static_batch_rejects_other_batch_sizes(cnn, tmp_path):
    path = export_onnx(cnn, tmp_path / "m.onnx", SIZE, dynamic_batch=False, batch_size=2)
    assert run_onnx(path, np.zeros((2, *SIZE), np.float32)).shape == (2, 4)
    with pytest.raises(ExportError, match=r"input of shape \(5, 3, 8, 8\)"):
        run_onnx(path, np.zeros((5, *SIZE), np.float32))


def test_callers_model_keeps_train_mode_and_weights(cnn, tmp_path):
    cnn.train()
    before = {k: v.clone() for k, v in cnn.state_dict().items()}
    export_onnx(cnn, tmp_path / "m.onnx", SIZE)
    assert cnn.training and all(m.training for m in cnn.modules())
    assert all(torch.equal(before[k], v) for k, v in cnn.state_dict().items())


def test_input_size_and_metadata_come_from_the_spec(cnn, tmp_path):
    attach_spec(cnn, ModelSpec(arch="small_cnn", num_classes=4, input_size=(3, 6, 6), mean=(0.1, 0.2, 0.3)))
    path = export_onnx(cnn, tmp_path / "m.onnx")
    session = ort_session(path)
    assert session.get_inputs()[0].shape[1:] == [3, 6, 6]
    spec = onnx_spec(session)
    assert spec["arch"] == "small_cnn" and spec["mean"] == [0.1, 0.2, 0.3]


def test_missing_input_size_without_spec_is_a_model_error(cnn, tmp_path):
    with pytest.raises(ModelError, match="SmallCNN has no DeepShrink spec.*input_size"):
        export_onnx(cnn, tmp_path / "m.onnx")
    with pytest.raises(ConfigError, match="input_size must be positive"):
        export_onnx(cnn, tmp_path / "m.onnx", (3, 0, 8))


def test_unsupported_op_raises_export_error_naming_model_and_op(tmp_path):
    path = tmp_path / "fft.onnx"
    with pytest.raises(ExportError, match=r"cannot export FFTModel to ONNX opset 17: .*aten::fft_fft2"):
        export_onnx(FFTModel(), path, SIZE)
    assert not path.exists() and list(tmp_path.iterdir()) == []  # nothing half-written


def test_value_frozen_by_the_trace_is_caught_by_the_comparison(tmp_path):
    model = FrozenScalarModel()
    with pytest.warns(torch.jit.TracerWarning, match="Python float"):
        path = export_onnx(model, tmp_path / "frozen.onnx", SIZE)  # exports, but wrongly
    with pytest.raises(ExportError, match="FrozenScalarModel differs from PyTorch: max abs error"):
        check_onnx_matches(model, path, SIZE)


def test_check_onnx_matches_returns_small_error(cnn, tmp_path):
    path = export_onnx(cnn, tmp_path / "m.onnx", SIZE)
    assert check_onnx_matches(cnn, path, SIZE, batch_size=3, atol=1e-5, rtol=0) < 1e-5


def test_export_verb_dispatches_on_format(cnn, tmp_path):
    path = export(cnn, tmp_path / "sub" / "m.onnx", input_size=SIZE)
    assert path.is_file() and onnx.load(path).graph.output[0].name == "logits"
    assert deepshrink.export(cnn, tmp_path / "root.onnx", input_size=SIZE).is_file()
    with pytest.raises(UnknownNameError, match="unknown export format 'onxx'.*did you mean: onnx"):
        export(cnn, tmp_path / "m.onnx", format="onxx")
    with pytest.raises(ConfigError, match="export format 'onnx'.*opsett"):
        export(cnn, tmp_path / "m.onnx", input_size=SIZE, opsett=17)
