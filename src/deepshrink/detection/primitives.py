"""Pure tensor maths for detection: box formats, IoU, GIoU/CIoU, centerness and focal losses.

Boxes are (x1, y1, x2, y2) in pixels unless a name says otherwise; every function works on
batches of boxes along the leading dimensions and is differentiable where a loss needs it."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

EPS = 1e-7


def cxcywh_to_xyxy(boxes: torch.Tensor) -> torch.Tensor:
    cx, cy, w, h = boxes.unbind(-1)
    return torch.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], dim=-1)


def xyxy_to_xywh(boxes: torch.Tensor) -> torch.Tensor:
    """(x1, y1, x2, y2) -> COCO's (x, y, w, h)."""
    x1, y1, x2, y2 = boxes.unbind(-1)
    return torch.stack([x1, y1, x2 - x1, y2 - y1], dim=-1)


def box_area(boxes: torch.Tensor) -> torch.Tensor:
    return (boxes[..., 2] - boxes[..., 0]).clamp_min(0) * (boxes[..., 3] - boxes[..., 1]).clamp_min(0)


def box_iou(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """IoU of every box in a [N, 4] with every box in b [M, 4]: [N, M]."""
    top_left = torch.maximum(a[:, None, :2], b[None, :, :2])
    bottom_right = torch.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = (bottom_right - top_left).clamp_min(0).prod(-1)
    union = box_area(a)[:, None] + box_area(b)[None, :] - inter
    return inter / union.clamp_min(EPS)


def paired_iou(a: torch.Tensor, b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """IoU of a[i] with b[i] along the leading dims, their union, and the enclosing box's (w, h)."""
    inter_wh = (torch.minimum(a[..., 2:], b[..., 2:]) - torch.maximum(a[..., :2], b[..., :2])).clamp_min(0)
    inter = inter_wh[..., 0] * inter_wh[..., 1]
    union = box_area(a) + box_area(b) - inter
    enclose_wh = torch.maximum(a[..., 2:], b[..., 2:]) - torch.minimum(a[..., :2], b[..., :2])
    return inter / union.clamp_min(EPS), union, enclose_wh


def giou_loss(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """1 - GIoU (Rezatofighi et al. 2019), element-wise over the leading dims; in [0, 2]."""
    iou, union, enclose_wh = paired_iou(pred, target)
    enclose = enclose_wh.clamp_min(0).prod(-1)
    return 1 - (iou - (enclose - union) / enclose.clamp_min(EPS))


def ciou_loss(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """1 - CIoU (Zheng et al. 2020): IoU, centre distance over the enclosing diagonal, aspect term."""
    iou, _, enclose_wh = paired_iou(pred, target)
    diagonal = enclose_wh.pow(2).sum(-1).clamp_min(EPS)
    centre = ((pred[..., :2] + pred[..., 2:]) - (target[..., :2] + target[..., 2:])).pow(2).sum(-1) / 4
    w_p, h_p = (pred[..., 2] - pred[..., 0]).clamp_min(EPS), (pred[..., 3] - pred[..., 1]).clamp_min(EPS)
    w_t, h_t = (target[..., 2] - target[..., 0]).clamp_min(EPS), (target[..., 3] - target[..., 1]).clamp_min(EPS)
    v = (4 / math.pi**2) * (torch.atan(w_t / h_t) - torch.atan(w_p / h_p)).pow(2)
    with torch.no_grad():  # the trade-off weight is a constant in the paper's gradient
        alpha = v / (1 - iou + v).clamp_min(EPS)
    return 1 - (iou - centre / diagonal - alpha * v)


def distances_to_boxes(points: torch.Tensor, ltrb: torch.Tensor) -> torch.Tensor:
    """Anchor points [..., 2] and (left, top, right, bottom) distances [..., 4] -> boxes."""
    return torch.cat([points - ltrb[..., :2], points + ltrb[..., 2:]], dim=-1)


def boxes_to_distances(points: torch.Tensor, boxes: torch.Tensor) -> torch.Tensor:
    """Inverse of `distances_to_boxes` (negative where a point lies outside its box)."""
    return torch.cat([points - boxes[..., :2], boxes[..., 2:] - points], dim=-1)


def centerness(ltrb: torch.Tensor) -> torch.Tensor:
    """FCOS centerness sqrt(min(l, r) / max(l, r) * min(t, b) / max(t, b)), 1 at a box's centre."""
    lr, tb = ltrb[..., 0::2], ltrb[..., 1::2]
    ratio = (lr.min(-1).values / lr.max(-1).values.clamp_min(EPS)) * (tb.min(-1).values / tb.max(-1).values.clamp_min(EPS))
    return ratio.clamp_min(0).sqrt()


def sigmoid_focal_loss(logits: torch.Tensor, targets: torch.Tensor, alpha: float, gamma: float) -> torch.Tensor:
    """Element-wise focal loss on sigmoid probabilities; `targets` in {0, 1}; alpha < 0 disables it."""
    p = logits.sigmoid()
    ce = F.binary_cross_entropy_with_logits(logits, targets, reduction="none")
    p_t = p * targets + (1 - p) * (1 - targets)
    loss = ce * (1 - p_t).pow(gamma)
    if alpha >= 0:
        loss = loss * (alpha * targets + (1 - alpha) * (1 - targets))
    return loss


def quality_focal_loss(logits: torch.Tensor, quality: torch.Tensor, gamma: float) -> torch.Tensor:
    """Element-wise quality focal loss (GFL): BCE towards a soft target in [0, 1] (the IoU at a
    positive's class, 0 elsewhere), scaled by |sigmoid - target| ** gamma."""
    p = logits.sigmoid()
    ce = F.binary_cross_entropy_with_logits(logits, quality, reduction="none")
    return ce * (p - quality).abs().pow(gamma)
