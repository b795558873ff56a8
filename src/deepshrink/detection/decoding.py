"""Decode + NMS: the post-process of the detector's raw output [B, A, 5 + C], in eager PyTorch
or after ONNX Runtime (the exported graph stops at the raw tensor, see `detection.export`).

Per image: score = sqrt(sigmoid(class) * sigmoid(centerness)) (FCOS), candidates above
`score_threshold`, the `pre_nms_topk` best (point, class) pairs, boxes = point -+ distances clipped
to the image, greedy class-aware NMS (classes are kept apart by offsetting their boxes), then the
`max_detections` best. Each image gives a [K, 6] tensor: x1, y1, x2, y2, score, class."""

from __future__ import annotations

import functools

import numpy as np
import torch

from deepshrink.detection.config import PostprocessConfig
from deepshrink.detection.models import STRIDES, anchor_points
from deepshrink.detection.primitives import EPS, distances_to_boxes
from deepshrink.errors import ConfigError
from deepshrink.threads import one_thread


def nms(boxes: torch.Tensor, scores: torch.Tensor, iou_threshold: float, max_keep: int | None = None) -> torch.Tensor:
    """Indices of the boxes greedy NMS keeps, best score first (torchvision.ops.nms semantics:
    a box is dropped when its IoU with a kept, better-scored box exceeds the threshold).

    Each kept box suppresses the later ones in one NumPy vector op, and the walk stops after
    `max_keep` boxes (the rest would be cut anyway): about 100 small ops instead of an N x N IoU
    matrix, which costs tens of ms at N = 1000 on a busy CPU."""
    if boxes.numel() == 0:
        return torch.zeros(0, dtype=torch.int64, device=boxes.device)
    order = scores.argsort(descending=True, stable=True)
    x1, y1, x2, y2 = boxes[order].detach().float().cpu().numpy().T
    areas = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)
    suppressed = np.zeros(len(areas), dtype=bool)
    keep: list[int] = []
    for i in range(len(areas)):
        if suppressed[i]:
            continue
        keep.append(i)
        if max_keep is not None and len(keep) >= max_keep:
            break
        inter = (np.clip(np.minimum(x2[i], x2[i + 1 :]) - np.maximum(x1[i], x1[i + 1 :]), 0, None)
                 * np.clip(np.minimum(y2[i], y2[i + 1 :]) - np.maximum(y1[i], y1[i + 1 :]), 0, None))
        iou = inter / np.maximum(areas[i] + areas[i + 1 :] - inter, EPS)
        suppressed[i + 1 :] |= iou > iou_threshold
    return order[torch.as_tensor(keep, dtype=torch.int64, device=order.device)]


def batched_nms(boxes: torch.Tensor, scores: torch.Tensor, classes: torch.Tensor, iou_threshold: float,
                max_keep: int | None = None) -> torch.Tensor:
    """Class-aware NMS in one call: shifting each class's boxes by a distinct offset larger than
    any coordinate makes boxes of different classes disjoint."""
    if boxes.numel() == 0:
        return torch.zeros(0, dtype=torch.int64, device=boxes.device)
    offset = classes.to(boxes) * (boxes.max() - boxes.min() + 1)
    return nms(boxes + offset[:, None], scores, iou_threshold, max_keep)


def decode(raw: torch.Tensor, points: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Raw output [B, A, 5 + C] -> boxes [B, A, 4] and scores [B, A, C]."""
    boxes = distances_to_boxes(points, raw[..., :4])
    scores = (raw[..., 5:].sigmoid() * raw[..., 4:5].sigmoid()).sqrt()
    return boxes, scores


@functools.lru_cache(maxsize=16)
def _points(height: int, width: int, strides: tuple[int, ...], device: str) -> torch.Tensor:
    return anchor_points(height, width, strides, device)[0]


@torch.no_grad()
def postprocess(
    raw: torch.Tensor,
    image_size: tuple[int, int],
    config: PostprocessConfig | dict | None = None,
    strides: tuple[int, ...] = STRIDES,
) -> list[torch.Tensor]:
    """Detections per image ([K, 6]) from the raw output of a detector whose input was
    image_size = (H, W); `raw` may be a NumPy array straight from ONNX Runtime."""
    cfg = PostprocessConfig.coerce(config)
    with one_thread():  # many tiny ops: see deepshrink.threads
        return _postprocess(torch.as_tensor(raw).float(), image_size, cfg, tuple(strides))


def _postprocess(raw: torch.Tensor, image_size: tuple[int, int], cfg: PostprocessConfig,
                 strides: tuple[int, ...]) -> list[torch.Tensor]:
    height, width = image_size
    points = _points(height, width, tuple(strides), str(raw.device))
    if raw.shape[1] != points.shape[0]:
        raise ConfigError(f"raw detector output has {raw.shape[1]} points, but a {height}x{width} input gives "
                          f"{points.shape[0]} at strides {list(strides)}: pass the input's image_size")
    boxes, scores = decode(raw, points)
    limit = torch.tensor([width, height, width, height], dtype=boxes.dtype, device=boxes.device)
    num_classes = scores.shape[-1]
    results = []
    for image_boxes, image_scores in zip(boxes, scores):
        flat = image_scores.flatten()
        candidates = torch.nonzero(flat > cfg.score_threshold).squeeze(1)
        if candidates.numel() > cfg.pre_nms_topk:
            candidates = candidates[flat[candidates].topk(cfg.pre_nms_topk).indices]
        point, cls = candidates // num_classes, candidates % num_classes
        kept_boxes = torch.minimum(image_boxes[point].clamp_min(0), limit)
        kept_scores = flat[candidates]
        if cfg.class_agnostic:
            keep = nms(kept_boxes, kept_scores, cfg.iou_threshold, cfg.max_detections)
        else:
            keep = batched_nms(kept_boxes, kept_scores, cls, cfg.iou_threshold, cfg.max_detections)
        results.append(torch.cat([kept_boxes[keep], kept_scores[keep, None], cls[keep, None].to(boxes)], dim=1))
    return results
