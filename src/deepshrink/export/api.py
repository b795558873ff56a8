"""The `export` verb: one entry point for every deployment format, dispatched through a registry."""

from __future__ import annotations

import inspect
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch.nn as nn

from deepshrink.errors import ConfigError
from deepshrink.export.ncnn_export import NcnnResult, export_ncnn
from deepshrink.export.onnx_export import export_onnx
from deepshrink.registry import Registry

# format name -> writer(model, path, **options): the file written (onnx), or a result (ncnn)
FORMATS: Registry[Callable[..., Any]] = Registry("export format")
FORMATS.register("onnx")(export_onnx)
FORMATS.register("ncnn")(export_ncnn)  # path is a directory; needs the optional `ncnn` extra


def export(model: nn.Module, path: str | os.PathLike, *, format: str = "onnx", **options: Any) -> Path | NcnnResult:
    """Write `model` to `path` in `format` (see FORMATS); options go to that format's writer and its
    result is returned: e.g. `export(model, "m.onnx", input_size=(3, 32, 32), opset=17)` gives the
    path, `export(model, "out/", format="ncnn")` an NcnnResult (verified against PyTorch)."""
    writer = FORMATS.get(format)
    try:
        inspect.signature(writer).bind(model, path, **options)
    except TypeError as exc:
        raise ConfigError(f"export format '{format}': {exc}") from None
    return writer(model, path, **options)
