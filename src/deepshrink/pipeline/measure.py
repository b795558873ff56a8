"""The metrics recorded after every step: accuracy, size, MACs per layer, channels, latency."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch.nn as nn

from deepshrink.pipeline.context import RunContext


def channels_per_layer(model: nn.Module) -> dict[str, int]:
    """Output channels of every convolution and linear layer (what pruning keeps)."""
    return {name: int(getattr(m, "out_channels", getattr(m, "out_features", 0)))
            for name, m in model.named_modules() if isinstance(m, (nn.Conv2d, nn.Linear))}


def measure_stage(ctx: RunContext, name: str, model: nn.Module, *, onnx_path: Path | None = None,
                  history: list | None = None) -> dict[str, Any]:
    from deepshrink.export import onnx_latency_ms
    from deepshrink.metrics import file_bytes, profile

    batches = (1,) if ctx.smoke else ctx.task.latency_batches
    prof = profile(model, batch_sizes=batches, runtimes=() if onnx_path else ("ort",))
    score = ctx.task.score
    stage: dict[str, Any] = {
        "name": name,
        **_scores(ctx.task.evaluate(model, ctx.data, limit_batches=ctx.limit_batches)),
        "params": prof.params,
        "macs": prof.macs,
        "bytes": prof.bytes,
        "bytes_zipped": prof.bytes_zipped,
        "latency_ms": dict(prof.latency_ms),
        "threads": prof.threads,
        "macs_per_layer": prof.macs_per_layer,
        "channels_per_layer": channels_per_layer(model),
        "history": history or [],
    }
    if onnx_path is not None:
        # A deployed artifact: its own file size, speed and accuracy are what count.
        stage["bytes"] = file_bytes(onnx_path)
        stage["latency_ms"] = {f"ort_b{b}": round(onnx_latency_ms(onnx_path, b, prof.input_size).median, 4) for b in batches}
        stage[f"{score}_fake_quant"] = stage[score]
        stage.update(_scores(ctx.task.evaluate_onnx(onnx_path, ctx.data, limit_batches=ctx.limit_batches)))
        stage["artifact"] = str(onnx_path)
    return stage


def _scores(metrics: dict[str, Any]) -> dict[str, Any]:
    """The task's headline numbers (top1, or map50 and map50_95) out of an evaluation."""
    return {k: metrics[k] for k in ("top1", "map50", "map50_95") if k in metrics}
