from __future__ import annotations

import pytest
import torch
import torch.nn as nn

from deepshrink.errors import DataError, ModelError
from deepshrink.metrics import file_bytes, model_bytes


def _zeros_model() -> nn.Module:
    model = nn.Sequential(nn.Linear(256, 256), nn.Linear(256, 10))
    with torch.no_grad():
        for p in model.parameters():
            p.zero_()
    return model


def test_fp32_bytes_hold_every_weight_and_zeros_zip_small():
    model = _zeros_model()
    sizes = model_bytes(model)
    numel = sum(p.numel() for p in model.parameters())
    assert 4 * numel <= sizes["fp32"] < 4 * numel + 2_000  # payload plus a small JSON header
    assert sizes["zipped"] < sizes["fp32"] / 50


def test_random_weights_barely_compress_and_half_counts_as_fp32():
    model = nn.Linear(128, 128)
    sizes = model_bytes(model)
    assert 0.85 * sizes["fp32"] < sizes["zipped"] <= sizes["fp32"] + 200
    assert model_bytes(model.half())["fp32"] == sizes["fp32"]


@pytest.mark.filterwarnings("ignore:torch.quantize_per_tensor:UserWarning")  # deprecated in torch 2.13
def test_quantized_tensors_count_their_int8_payload():
    weight = torch.quantize_per_tensor(torch.randn(64, 64), 0.1, 0, torch.qint8)

    class Holder(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.register_buffer("w", weight)

    assert 64 * 64 <= model_bytes(Holder())["fp32"] < 64 * 64 + 1_000


def test_empty_model_is_an_error():
    with pytest.raises(ModelError, match="ReLU has an empty state dict"):
        model_bytes(nn.ReLU())


def test_file_bytes_of_files_and_directories(tmp_path):
    (tmp_path / "a.bin").write_bytes(b"x" * 10)
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "b.bin").write_bytes(b"y" * 5)
    assert file_bytes(tmp_path / "a.bin") == 10
    assert file_bytes(tmp_path) == 15
    with pytest.raises(DataError, match="missing.onnx: no such file"):
        file_bytes(tmp_path / "missing.onnx")
