"""Deploying a detector: ONNX export of the network, the post-process run after ONNX Runtime,
and a profile with latency both without and with decode + NMS.

The exported graph ends at the raw tensor (output "logits", [batch, A, 5 + C]); NMS stays
outside it, as documented here, because its cost depends on the scene and a graph NMS
(NonMaxSuppression) differs between runtimes. Run a deployed model as

    session = deepshrink.export.ort_session("detector.onnx")
    raw = deepshrink.export.run_onnx(session, images)          # normalised float [B, 3, H, W]
    detections = deepshrink.detection.postprocess(raw, (H, W))  # per image [K, 6]: x1 y1 x2 y2 score class

in letterboxed pixels (`deepshrink.detection.letterbox.unmap_boxes` maps them back to the photo)."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Sequence
from pathlib import Path

import torch
import torch.nn as nn

from deepshrink.detection.config import PostprocessConfig
from deepshrink.detection.models import STRIDES
from deepshrink.detection.decoding import postprocess
from deepshrink.errors import ConfigError
from deepshrink.export import export_onnx, ort_session, resolve_threads
from deepshrink.export.common import eval_mode, resolve_input_size
from deepshrink.metrics import Profile, profile, time_callable
from deepshrink.metrics.latency import torch_threads


def export_detector(model: nn.Module, path: str | os.PathLike, input_size: Sequence[int] | None = None, *,
                    opset: int = 17) -> Path:
    """The network to ONNX (dynamic batch); NMS is the post-process described in this module."""
    return export_onnx(model, path, input_size, opset=opset)


def _time_with_nms(run, x: torch.Tensor, size: tuple[int, int], cfg: PostprocessConfig, strides, threads: int) -> float:
    def call() -> None:
        postprocess(run(x), size, cfg, strides)

    return time_callable(call, threads=threads).median


def profile_detector(
    model: nn.Module,
    input_size: Sequence[int] | None = None,
    *,
    batch_sizes: Sequence[int] = (1,),
    runtimes: Sequence[str] = ("eager", "ort"),
    images: torch.Tensor | None = None,
    postprocess_config: PostprocessConfig | dict | None = None,
    threads: int | None = None,
) -> Profile:
    """`deepshrink.metrics.profile` (params, MACs at the detector's input size, bytes, latency of
    the network) plus `"<runtime>_b<batch>_nms"` latencies: network + decode + NMS end to end.
    NMS time depends on how many boxes pass the score threshold, so pass real normalised
    `images` (at least the largest batch size of them) for deployment numbers; without them the
    input is random."""
    size = resolve_input_size(model, input_size)
    result = profile(model, size, batch_sizes=batch_sizes, runtimes=runtimes, threads=threads)
    cfg = PostprocessConfig.coerce(postprocess_config)
    strides = tuple(getattr(model, "strides", STRIDES))
    n_threads = resolve_threads(threads)
    if images is not None and images.shape[0] < max(batch_sizes):
        raise ConfigError(f"images: need at least {max(batch_sizes)} images for batch sizes {list(batch_sizes)}")
    hw = (size[1], size[2])
    inputs = {b: (images[:b] if images is not None else torch.randn(b, *size)) for b in batch_sizes}
    with tempfile.TemporaryDirectory(prefix="deepshrink-det-") as tmp, torch_threads(n_threads):
        for kind in runtimes:
            if kind == "eager":
                with eval_mode(model), torch.inference_mode():
                    for b, x in inputs.items():
                        timed = _time_with_nms(model, x, hw, cfg, strides, n_threads)
                        result.latency_ms[f"eager_b{b}_nms"] = round(timed, 4)
            elif kind == "ort":
                session = ort_session(export_detector(model, Path(tmp) / "detector.onnx", size), n_threads)
                name = session.get_inputs()[0].name

                def run(x: torch.Tensor):
                    return session.run(None, {name: x.numpy()})[0]

                for b, x in inputs.items():
                    result.latency_ms[f"ort_b{b}_nms"] = round(_time_with_nms(run, x, hw, cfg, strides, n_threads), 4)
    return result
