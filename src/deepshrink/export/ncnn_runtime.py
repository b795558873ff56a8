"""ncnn on CPU through the `ncnn` Python package: loading a converted net with FP32 options, running
it one image at a time (ncnn has no batch axis), and timing it at batch 1.

pnnx and ncnn are the optional `ncnn` extra; they are imported only when used, and a missing one is
an ExportError that says how to install it."""

from __future__ import annotations

import importlib
import os
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from deepshrink.errors import ConfigError, ExportError
from deepshrink.export.runtime import resolve_threads

if TYPE_CHECKING:
    from deepshrink.metrics.timing import Timing

INSTALL_HINT = "pip install 'deepshrink[ncnn]'"


def require_ncnn(*names: str) -> tuple[ModuleType, ...]:
    """Import the named optional packages (default: ncnn) or raise an ExportError naming the missing
    ones and the extra that installs them."""
    modules, missing = [], []
    for name in names or ("ncnn",):
        try:
            modules.append(importlib.import_module(name))
        except ImportError:
            missing.append(name)
    if missing:
        raise ExportError(
            f"ncnn export needs the optional packages pnnx and ncnn; not installed: {', '.join(missing)}. "
            f"Install them with: {INSTALL_HINT}"
        )
    return tuple(modules)


def unsupported_layers(param_path: str | os.PathLike) -> list[tuple[str, str]]:
    """(type, name) of the layers in an ncnn .param file that ncnn does not implement. pnnx leaves
    an op it cannot lower under its PyTorch name (e.g. `Tensor.slice`); ncnn's own types never
    contain a dot, and loading such a file fails."""
    lines = Path(param_path).read_text().splitlines()
    found = []
    for line in lines[2:]:  # magic number, then "layer_count blob_count"
        fields = line.split()
        if len(fields) >= 2 and ("." in fields[0] or "::" in fields[0]):
            found.append((fields[0], fields[1]))
    return found


def ncnn_net(param: str | os.PathLike, bin: str | os.PathLike, threads: int | None = 1) -> Any:
    """A loaded `ncnn.Net` computing in FP32 (no fp16/bf16 storage or arithmetic, so its numbers are
    the ones export verification checked) with `threads` threads (None: PyTorch's count)."""
    (ncnn,) = require_ncnn("ncnn")
    param, bin = Path(param), Path(bin)
    for path in (param, bin):
        if not path.is_file():
            raise ExportError(f"{path}: ncnn file not found")
    unknown = unsupported_layers(param)
    if unknown:
        listed = ", ".join(f"'{name}' ({kind})" for kind, name in unknown)
        raise ExportError(f"{param}: ncnn has no implementation of layer {listed}")
    net = ncnn.Net()
    net.opt.num_threads = resolve_threads(threads)
    for flag in ("use_fp16_storage", "use_fp16_packed", "use_fp16_arithmetic", "use_bf16_storage"):
        setattr(net.opt, flag, False)
    if net.load_param(str(param)) != 0:
        raise ExportError(f"{param}: ncnn cannot load this .param file")
    if net.load_model(str(bin)) != 0:
        raise ExportError(f"{bin}: ncnn cannot load the weights (does it belong to {param.name}?)")
    if len(net.input_names()) != 1 or len(net.output_names()) != 1:
        raise ExportError(
            f"{param}: expected one input and one output blob, found inputs {list(net.input_names())} "
            f"and outputs {list(net.output_names())}"
        )
    return net


def ncnn_forward(net: Any, batch: torch.Tensor) -> torch.Tensor:
    """The net's output for each image of `batch` [N, ...], stacked into [N, ...] (float32, CPU)."""
    (ncnn,) = require_ncnn("ncnn")
    if not isinstance(batch, torch.Tensor) or batch.dim() < 2 or batch.shape[0] < 1:
        got = tuple(batch.shape) if isinstance(batch, torch.Tensor) else type(batch).__name__
        raise ExportError(f"ncnn input must be a tensor [batch, C, H, W], got {got}")
    source, target = net.input_names()[0], net.output_names()[0]
    images = batch.detach().to("cpu", torch.float32).numpy()
    outputs = []
    for index, image in enumerate(images):
        array = np.ascontiguousarray(image)  # ncnn.Mat wraps this buffer: keep it alive until extract
        extractor = net.create_extractor()
        extractor.input(source, ncnn.Mat(array))
        status, mat = extractor.extract(target)
        if status != 0:
            raise ExportError(f"ncnn failed to compute output '{target}' for image {index} of shape {image.shape}")
        outputs.append(torch.from_numpy(np.array(mat, dtype=np.float32)))
    return torch.stack(outputs)


def run_ncnn(
    param: str | os.PathLike, bin: str | os.PathLike, batch: torch.Tensor, threads: int | None = 1
) -> torch.Tensor:
    """Load the net and run it on `batch` one image at a time; returns [N, ...] like the model."""
    return ncnn_forward(ncnn_net(param, bin, threads), batch)


def ncnn_latency_ms(
    param: str | os.PathLike,
    bin: str | os.PathLike,
    input_size: Sequence[int],
    threads: int | None = None,
    *,
    warmup: int | None = None,
    repeats: int | None = None,
) -> Timing:
    """Time one batch-1 inference (extractor + forward) on a random image: warm-up, then the median
    of repeated runs (`.median`, in ms). threads=None uses PyTorch's count, as ONNX Runtime timings do."""
    from deepshrink.metrics.timing import time_callable  # metrics imports export: import here

    (ncnn,) = require_ncnn("ncnn")
    net = ncnn_net(param, bin, threads)
    size = tuple(input_size)
    if not size or not all(isinstance(d, int) and not isinstance(d, bool) and d > 0 for d in size):
        raise ConfigError(f"input_size must be positive integers without the batch axis, got {input_size!r}")
    array = np.random.default_rng(0).standard_normal(size, dtype=np.float32)
    mat = ncnn.Mat(array)
    source, target = net.input_names()[0], net.output_names()[0]

    def infer() -> None:
        extractor = net.create_extractor()
        extractor.input(source, mat)
        extractor.extract(target)

    return time_callable(infer, threads=int(net.opt.num_threads), warmup=warmup, repeats=repeats)
