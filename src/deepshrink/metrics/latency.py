"""Inference latency of a model in PyTorch eager mode and in ONNX Runtime, at a given batch size and
thread count. Each runtime is a timer context: set up once (e.g. export to ONNX), then time any
number of batch sizes."""

from __future__ import annotations

import contextlib
import os
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from enum import Enum
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn

from deepshrink.errors import ConfigError
from deepshrink.threads import torch_threads
from deepshrink.export import export_onnx, onnx_latency_ms, ort_session, resolve_threads
from deepshrink.export.common import check_batch, eval_mode, resolve_input_size
from deepshrink.metrics.timing import Timing, time_callable

# (batch, warmup, repeats) -> Timing
BatchTimer = Callable[[int, int | None, int | None], Timing]


class Runtime(str, Enum):
    EAGER = "eager"
    ORT = "ort"

    @classmethod
    def parse(cls, value: "str | Runtime") -> "Runtime":
        try:
            return cls(value)
        except ValueError:
            allowed = ", ".join(r.value for r in cls)
            raise ConfigError(f"unknown runtime '{value}'; choose one of: {allowed}") from None


@contextlib.contextmanager
def eager_timer(model: nn.Module, input_size: tuple[int, ...], threads: int) -> Iterator[BatchTimer]:
    """Times `model(x)` in eval mode under inference_mode with `threads` intra-op threads."""
    device = next((p.device for p in model.parameters()), torch.device("cpu"))
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)

    def time_batch(batch: int, warmup: int | None, repeats: int | None) -> Timing:
        x = torch.randn(batch, *input_size, device=device)

        def call() -> None:
            model(x)
            sync()

        return time_callable(call, threads=threads, warmup=warmup, repeats=repeats)

    with eval_mode(model), torch.inference_mode(), torch_threads(threads):
        yield time_batch


@contextlib.contextmanager
def ort_timer(model: nn.Module, input_size: tuple[int, ...], threads: int) -> Iterator[BatchTimer]:
    """Exports `model` to a temporary ONNX file once and times ONNX Runtime CPU sessions on it."""
    with tempfile.TemporaryDirectory(prefix="deepshrink-ort-") as tmp:
        session = ort_session(export_onnx(model, Path(tmp) / "model.onnx", input_size), threads)

        def time_batch(batch: int, warmup: int | None, repeats: int | None) -> Timing:
            return onnx_latency_ms(session, batch, input_size, warmup=warmup, repeats=repeats)

        yield time_batch


TIMERS = {Runtime.EAGER: eager_timer, Runtime.ORT: ort_timer}


def runtime_timer(model: nn.Module, runtime: str | Runtime, input_size: tuple[int, ...], threads: int):
    """The timer context for `runtime` (see TIMERS)."""
    return TIMERS[Runtime.parse(runtime)](model, input_size, threads)


def latency_ms(
    model: nn.Module,
    input_size: Sequence[int] | None = None,
    batch: int = 1,
    *,
    runtime: str | Runtime = "eager",
    threads: int | None = None,
    warmup: int | None = None,
    repeats: int | None = None,
) -> Timing:
    """Latency of one forward pass on a batch of `batch` random inputs. `threads` defaults to
    PyTorch's current thread count; warm-up and repeats adapt to about one second when not given."""
    size = resolve_input_size(model, input_size)
    check_batch(batch)
    with runtime_timer(model, runtime, size, resolve_threads(threads)) as time_batch:
        return time_batch(batch, warmup, repeats)


def paired_latency_ms(paths: dict[str, str | os.PathLike], batch: int, input_size: Sequence[int], *,
                      threads: int | None = None, budget_s: float = 2.0, max_rounds: int = 200) -> dict[str, float]:
    """Median ONNX Runtime latency of several graphs measured in interleaved rounds (A, B, A, B,
    ...), so a machine whose load drifts slows them alike and their ratios stay meaningful."""
    sessions = {name: ort_session(path, threads) for name, path in paths.items()}
    feeds = {name: {s.get_inputs()[0].name: _random_input(s.get_inputs()[0].type, (batch, *input_size))}
             for name, s in sessions.items()}
    start = time.perf_counter()
    for name, session in sessions.items():  # warm-up (allocations, kernel selection)
        session.run(None, feeds[name])
    one_round = max(time.perf_counter() - start, 1e-6)
    rounds = int(min(max_rounds, max(5, budget_s / one_round)))
    times: dict[str, list[float]] = {name: [] for name in sessions}
    for _ in range(rounds):
        for name, session in sessions.items():
            begin = time.perf_counter()
            session.run(None, feeds[name])
            times[name].append((time.perf_counter() - begin) * 1000)
    return {name: float(np.median(t)) for name, t in times.items()}


def _random_input(onnx_type: str, shape: tuple[int, ...]) -> np.ndarray:
    """A seeded input of the graph's element type (uint8 for an int8 kernel graph fed quantised
    activations, float32 otherwise)."""
    rng = np.random.default_rng(0)
    if onnx_type == "tensor(uint8)":
        return rng.integers(0, 256, shape, dtype=np.uint8)
    return rng.standard_normal(shape, dtype=np.float32)
