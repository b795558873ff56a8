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
    from deepshrink.metrics import evaluate, evaluate_onnx, file_bytes, profile
    from deepshrink.export import onnx_latency_ms

    batches = (1,) if ctx.smoke else (1, 64)
    prof = profile(model, batch_sizes=batches, runtimes=() if onnx_path else ("ort",))
    stage: dict[str, Any] = {
        "name": name,
        "top1": evaluate(model, ctx.data, split="test", limit_batches=ctx.limit_batches)["top1"],
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
        stage["top1_fake_quant"] = stage["top1"]
        stage["top1"] = evaluate_onnx(onnx_path, ctx.data, split="test", limit_batches=ctx.limit_batches)["top1"]
        stage["artifact"] = str(onnx_path)
    return stage
