"""mAP of a detector on a split, in eager PyTorch or as deployed on ONNX Runtime: the same loop
(the data layer's BatchLoader, no augmentation) with a different `raw(images)` function, so the
two numbers differ only by what the runtime computes."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
import torch.nn as nn

from deepshrink.data import BatchLoader
from deepshrink.detection.config import PostprocessConfig
from deepshrink.detection.dataset import DetectionBundle, DetectionSet
from deepshrink.detection.metrics import MapResult, coco_map
from deepshrink.detection.decoding import postprocess
from deepshrink.errors import ConfigError
from deepshrink.export.common import eval_mode

RawFn = Callable[[torch.Tensor], Any]


def _split(data: DetectionBundle, split: str) -> DetectionSet:
    if split not in ("train", "val", "test"):
        raise ConfigError(f"split must be train, val or test, got '{split}'")
    return getattr(data, split)


def map_over(
    raw_fn: RawFn,
    data: DetectionBundle,
    *,
    split: str = "test",
    batch_size: int = 16,
    limit: int | None = None,
    postprocess_config: PostprocessConfig | dict | None = None,
    device: torch.device | str = "cpu",
    strides: tuple[int, ...] | None = None,
) -> MapResult:
    """mAP@0.5 and mAP@0.5:0.95 (percent) of `raw_fn` over the first `limit` images of a split."""
    subset = _split(data, split)
    if limit is not None:
        subset = subset.take(torch.arange(min(limit, len(subset))))
    cfg = PostprocessConfig.coerce(postprocess_config)
    loader = BatchLoader(subset, batch_size, train=False, augment=False, mean=data.mean, std=data.std, device=device)
    detections: list[torch.Tensor] = []
    ground_truth: list[tuple[torch.Tensor, torch.Tensor]] = []
    extra = {} if strides is None else {"strides": strides}
    for images, targets in loader:
        raw = raw_fn(images)
        detections += [d.cpu() for d in postprocess(raw, tuple(images.shape[-2:]), cfg, **extra)]
        for row in targets.cpu():
            keep = row[:, 0] >= 0
            ground_truth.append((row[keep, 1:], row[keep, 0].long()))
    return coco_map(detections, ground_truth, data.classes)


def evaluate_detector(model: nn.Module, data: DetectionBundle, *, split: str = "test", batch_size: int = 16,
                      limit: int | None = None, postprocess_config: PostprocessConfig | dict | None = None) -> MapResult:
    """mAP of a PyTorch detector (run in eval mode on its own device; modes are restored)."""
    device = next((p.device for p in model.parameters()), torch.device("cpu"))

    def raw_fn(images: torch.Tensor) -> torch.Tensor:
        return model(images)

    with eval_mode(model), torch.no_grad():
        return map_over(raw_fn, data, split=split, batch_size=batch_size, limit=limit,
                        postprocess_config=postprocess_config, device=device,
                        strides=getattr(model, "strides", None))


def evaluate_onnx_detector(path_or_session, data: DetectionBundle, *, split: str = "test", batch_size: int = 16,
                           limit: int | None = None, postprocess_config: PostprocessConfig | dict | None = None,
                           threads: int | None = None) -> MapResult:
    """mAP of an exported detector as deployed: ONNX Runtime for the network, then the post-process."""
    from deepshrink.export import as_session, ort_session, run_onnx

    session = ort_session(path_or_session, threads) if not hasattr(path_or_session, "run") else as_session(path_or_session)

    def raw_fn(images: torch.Tensor) -> torch.Tensor:
        return torch.from_numpy(run_onnx(session, images))

    return map_over(raw_fn, data, split=split, batch_size=batch_size, limit=limit, postprocess_config=postprocess_config)
