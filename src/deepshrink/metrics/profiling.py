"""`profile`: everything DeepShrink reports about a model's cost in one call: parameters, MACs per
layer, stored bytes, and latency per runtime and batch size at a recorded thread count."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field

import torch.nn as nn

from deepshrink.errors import ConfigError
from deepshrink.export import resolve_threads
from deepshrink.export.common import check_batch, resolve_input_size
from deepshrink.metrics.counting import count_params, macs
from deepshrink.metrics.latency import Runtime, runtime_timer
from deepshrink.metrics.size import model_bytes


@dataclass
class Profile:
    params: int
    macs: int
    bytes: int  # safetensors FP32 state dict
    bytes_zipped: int
    latency_ms: dict[str, float]  # "<runtime>_b<batch>" -> median milliseconds
    threads: int
    input_size: tuple[int, ...]
    macs_per_layer: dict[str, int] = field(default_factory=dict)
    latency_p90_ms: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict:
        data = asdict(self)
        data["input_size"] = list(self.input_size)
        return data


def profile(
    model: nn.Module,
    input_size: Sequence[int] | None = None,
    *,
    batch_sizes: Sequence[int] = (1, 64),
    runtimes: Sequence[str] = ("eager", "ort"),
    threads: int | None = None,
) -> Profile:
    """Measure `model` on inputs of `input_size` (C, H, W; default from its spec). Latency is the
    median of repeated runs after warm-up, per runtime and batch size; pass `runtimes=()` to skip."""
    size = resolve_input_size(model, input_size)
    batches = [check_batch(b, "batch_sizes") for b in batch_sizes]
    kinds = [Runtime.parse(r) for r in runtimes]
    if len(set(kinds)) != len(kinds) or len(set(batches)) != len(batches):
        raise ConfigError(f"runtimes and batch_sizes must not repeat, got {list(runtimes)} and {list(batch_sizes)}")
    n_threads = resolve_threads(threads)
    total, per_layer = macs(model, size)
    stored = model_bytes(model)
    medians: dict[str, float] = {}
    p90s: dict[str, float] = {}
    for kind in kinds:
        with runtime_timer(model, kind, size, n_threads) as time_batch:
            for batch in batches:
                timing = time_batch(batch, None, None)
                medians[f"{kind.value}_b{batch}"] = round(timing.median, 4)
                p90s[f"{kind.value}_b{batch}"] = round(timing.p90, 4)
    return Profile(
        params=count_params(model),
        macs=total,
        bytes=stored["fp32"],
        bytes_zipped=stored["zipped"],
        latency_ms=medians,
        threads=n_threads,
        input_size=size,
        macs_per_layer=per_layer,
        latency_p90_ms=p90s,
    )
