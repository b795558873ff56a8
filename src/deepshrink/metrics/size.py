"""Storage size: bytes of the saved FP32 state dict (safetensors), of the same deflate-zipped, and
of files on disk."""

from __future__ import annotations

import io
import os
import zipfile
from pathlib import Path

import torch
import torch.nn as nn
from safetensors.torch import save

from deepshrink.errors import DataError, ModelError
from deepshrink.export.common import model_name


def model_bytes(model: nn.Module) -> dict[str, int]:
    """`{"fp32": bytes, "zipped": bytes}`: the state dict saved as safetensors with every floating
    tensor in float32 (integer and quantized tensors keep their integer payload), and that file
    deflated into a zip archive (what weight sparsity or clustering saves on disk)."""
    payload = save(_storable_state(model))
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w", compression=zipfile.ZIP_DEFLATED) as handle:
        handle.writestr("model.safetensors", payload)
    return {"fp32": len(payload), "zipped": len(archive.getvalue())}


def file_bytes(path: str | os.PathLike) -> int:
    """Size of a file, or the total size of the files under a directory."""
    path = Path(path)
    if path.is_file():
        return path.stat().st_size
    if path.is_dir():
        return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
    raise DataError(f"{path}: no such file or directory")


def _storable_state(model: nn.Module) -> dict[str, torch.Tensor]:
    state: dict[str, torch.Tensor] = {}
    for key, value in model.state_dict().items():
        for suffix, tensor in _tensors(value):
            state[key + suffix] = _as_storable(tensor).detach().cpu().contiguous().clone()
    if not state:
        raise ModelError(f"{model_name(model)} has an empty state dict: nothing to measure")
    return state


def _tensors(value: object, suffix: str = "") -> list[tuple[str, torch.Tensor]]:
    """Tensors inside a state-dict entry (packed quantized params are tuples of tensors)."""
    if isinstance(value, torch.Tensor):
        if value.is_quantized:
            return [(suffix, value.int_repr()), *_quant_params(value, suffix)]
        return [(suffix, value)]
    if isinstance(value, (tuple, list)):
        return [pair for i, item in enumerate(value) for pair in _tensors(item, f"{suffix}.{i}")]
    return []  # plain numbers and other bookkeeping take no meaningful space


def _quant_params(tensor: torch.Tensor, suffix: str) -> list[tuple[str, torch.Tensor]]:
    if tensor.qscheme() in (torch.per_channel_affine, torch.per_channel_symmetric):
        scales, zeros = tensor.q_per_channel_scales(), tensor.q_per_channel_zero_points()
    else:
        scales, zeros = torch.tensor([tensor.q_scale()]), torch.tensor([tensor.q_zero_point()])
    return [(f"{suffix}.scale", scales), (f"{suffix}.zero_point", zeros)]


def _as_storable(tensor: torch.Tensor) -> torch.Tensor:
    return tensor.float() if tensor.is_floating_point() else tensor
