"""ONNX Runtime on CPU: sessions with a fixed thread count, running a graph, checking an exported
graph against PyTorch, and timing it."""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import onnxruntime as ort
import torch
import torch.nn as nn

from deepshrink.errors import ConfigError, ExportError
from deepshrink.export.common import check_batch, eval_mode, first_line, model_name, resolve_input_size
from deepshrink.export.onnx_export import SPEC_METADATA_KEY

if TYPE_CHECKING:
    from deepshrink.metrics.timing import Timing

SessionOrPath = ort.InferenceSession | str | os.PathLike


def resolve_threads(threads: int | None) -> int:
    """None means PyTorch's current intra-op thread count, so eager and ORT timings compare fairly."""
    if threads is None:
        return torch.get_num_threads()
    if not isinstance(threads, int) or isinstance(threads, bool) or threads < 1:
        raise ConfigError(f"threads must be a positive integer, got {threads!r}")
    return threads


def ort_session(path: str | os.PathLike, threads: int | None = None, *,
                profile_prefix: str | os.PathLike | None = None) -> ort.InferenceSession:
    """A CPU session: `threads` intra-op threads, sequential execution, all graph optimisations;
    with `profile_prefix`, ONNX Runtime's per-node profiler writes there (see metrics.ort_profile)."""
    path = Path(path)
    if not path.is_file():
        raise ExportError(f"{path}: ONNX file not found")
    options = ort.SessionOptions()
    options.intra_op_num_threads = resolve_threads(threads)
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.log_severity_level = 3  # errors only
    if profile_prefix is not None:
        options.enable_profiling = True
        options.profile_file_prefix = str(profile_prefix)
    try:
        return ort.InferenceSession(str(path), sess_options=options, providers=["CPUExecutionProvider"])
    except Exception as exc:
        raise ExportError(f"{path}: ONNX Runtime cannot load the model ({first_line(exc)})") from None


def session_threads(session: ort.InferenceSession) -> int:
    return session.get_session_options().intra_op_num_threads


def onnx_spec(session: ort.InferenceSession) -> dict | None:
    """The ModelSpec (as a dict) that export_onnx stored in the graph's metadata, if any."""
    text = session.get_modelmeta().custom_metadata_map.get(SPEC_METADATA_KEY)
    if text is None:
        return None
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        raise ExportError(f"ONNX metadata '{SPEC_METADATA_KEY}' is not valid JSON") from None


def as_session(session_or_path: SessionOrPath, threads: int | None = None) -> ort.InferenceSession:
    if isinstance(session_or_path, ort.InferenceSession):
        return session_or_path
    return ort_session(session_or_path, threads)


def run_onnx(session_or_path: SessionOrPath, x: np.ndarray | torch.Tensor) -> np.ndarray:
    """The first output of the graph for input `x` (converted to contiguous float32)."""
    session = as_session(session_or_path)
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().numpy()
    array = np.ascontiguousarray(x, dtype=np.float32)
    feed = {session.get_inputs()[0].name: array}
    try:
        return session.run(None, feed)[0]
    except Exception as exc:
        expected = session.get_inputs()[0].shape
        raise ExportError(
            f"ONNX Runtime failed on input of shape {tuple(array.shape)} (graph expects {expected}): {first_line(exc)}"
        ) from None


def check_onnx_matches(
    model: nn.Module,
    session_or_path: SessionOrPath,
    input_size: Sequence[int] | None = None,
    *,
    batch_size: int = 2,
    atol: float = 1e-4,
    rtol: float = 1e-4,
) -> float:
    """Run PyTorch and ONNX Runtime on the same random input; return the max absolute error, or
    raise ExportError when any element differs by more than atol + rtol * |reference|."""
    size = resolve_input_size(model, input_size)
    check_batch(batch_size, "batch_size")
    x = torch.randn(batch_size, *size, generator=torch.Generator().manual_seed(0))
    device = next((p.device for p in model.parameters()), torch.device("cpu"))
    with eval_mode(model), torch.inference_mode():
        reference = model(x.to(device)).float().cpu().numpy()
    got = run_onnx(session_or_path, x)
    if got.shape != reference.shape:
        raise ExportError(f"ONNX output of {model_name(model)} has shape {got.shape}, PyTorch gives {reference.shape}")
    error = np.abs(got - reference)
    max_error = float(error.max()) if error.size else 0.0
    if not np.all(error <= atol + rtol * np.abs(reference)):
        raise ExportError(
            f"ONNX Runtime output of {model_name(model)} differs from PyTorch: max abs error {max_error:.3g} "
            f"(allowed atol={atol:g} + rtol={rtol:g} * |reference|)"
        )
    return max_error


def onnx_latency_ms(
    session_or_path: SessionOrPath,
    batch: int,
    input_size: Sequence[int] | None = None,
    *,
    threads: int | None = None,
    warmup: int | None = None,
    repeats: int | None = None,
) -> Timing:
    """Time one ONNX Runtime call on a random batch: warm-up, then the median of repeated runs."""
    from deepshrink.metrics.timing import time_callable  # metrics imports export: import here

    check_batch(batch)
    session = as_session(session_or_path, threads)
    size = tuple(input_size) if input_size is not None else static_input_size(session)
    x = np.random.default_rng(0).standard_normal((batch, *size), dtype=np.float32)
    feed = {session.get_inputs()[0].name: x}
    threads_used = session_threads(session)
    return time_callable(lambda: session.run(None, feed), threads=threads_used, warmup=warmup, repeats=repeats)


def static_input_size(session: ort.InferenceSession) -> tuple[int, ...]:
    dims = session.get_inputs()[0].shape[1:]
    if not all(isinstance(d, int) for d in dims):
        shape = session.get_inputs()[0].shape
        raise ConfigError(f"the ONNX graph's input shape {shape} is not static: pass input_size")
    return tuple(dims)
