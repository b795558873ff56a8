"""The `export` verb: one entry point for every deployment format, dispatched through a registry."""

from __future__ import annotations

import inspect
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch.nn as nn

from deepshrink.errors import ConfigError
from deepshrink.export.onnx_export import export_onnx
from deepshrink.registry import Registry

# format name -> writer(model, path, **options) -> Path
FORMATS: Registry[Callable[..., Path]] = Registry("export format")
FORMATS.register("onnx")(export_onnx)


def export(model: nn.Module, path: str | os.PathLike, *, format: str = "onnx", **options: Any) -> Path:
    """Write `model` to `path` in `format` (see FORMATS); options go to that format's writer,
    e.g. `export(model, "m.onnx", input_size=(3, 32, 32), opset=17)`."""
    writer = FORMATS.get(format)
    try:
        inspect.signature(writer).bind(model, path, **options)
    except TypeError as exc:
        raise ConfigError(f"export format '{format}': {exc}") from None
    return writer(model, path, **options)
