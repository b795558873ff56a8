"""FCOS target assignment and losses (Tian et al. 2019, with the centre-sampling of FCOS-imprv).

A point is a positive for a ground-truth box when it lies within `center_radius` strides of the
box centre (and inside the box) and the box's largest distance from it falls in the point level's
range (0-64, 64-128, 128-inf px for strides 8/16/32: 4 and 8 strides); of several such boxes it
takes the smallest. Losses, normalised by the number of positives:
focal (or quality focal) on every point's classes, GIoU/CIoU on positives weighted by their
centerness target, and BCE on the centerness of positives."""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn as nn
import torch.nn.functional as F

from deepshrink.detection.config import BoxLoss, ClassLoss, LossConfig
from deepshrink.detection.primitives import (
    box_area,
    boxes_to_distances,
    centerness,
    ciou_loss,
    distances_to_boxes,
    giou_loss,
    paired_iou,
    quality_focal_loss,
    sigmoid_focal_loss,
)

BOX_LOSSES: dict[BoxLoss, Callable[[torch.Tensor, torch.Tensor], torch.Tensor]] = {
    BoxLoss.GIOU: giou_loss,
    BoxLoss.CIOU: ciou_loss,
}


def level_ranges(point_strides: torch.Tensor, strides: tuple[int, ...]) -> tuple[torch.Tensor, torch.Tensor]:
    """(low, high) regression range of each point from its level."""
    low = torch.where(point_strides == strides[0], 0.0, 4 * point_strides)
    high = torch.where(point_strides == strides[-1], float("inf"), 8 * point_strides)
    return low, high


@torch.no_grad()
def assign(
    targets: torch.Tensor, points: torch.Tensor, point_strides: torch.Tensor, strides: tuple[int, ...], radius: float
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """For targets [B, M, 5] and points [A, 2]: (positive mask [B, A], matched class [B, A],
    matched box [B, A, 4]); class and box are meaningless where the mask is false."""
    targets = targets.float()
    boxes, classes, valid = targets[..., 1:], targets[..., 0], targets[..., 0] >= 0
    ltrb = boxes_to_distances(points[None, :, None, :], boxes[:, None, :, :])  # [B, A, M, 4]
    centre = (boxes[..., :2] + boxes[..., 2:]) / 2  # [B, M, 2]
    reach = radius * point_strides[None, :, None, None]
    centre_box = torch.cat([
        torch.maximum(centre[:, None] - reach, boxes[:, None, :, :2]),
        torch.minimum(centre[:, None] + reach, boxes[:, None, :, 2:]),
    ], dim=-1)
    in_centre = boxes_to_distances(points[None, :, None, :], centre_box).amin(-1) > 0
    low, high = level_ranges(point_strides, strides)
    farthest = ltrb.amax(-1)
    in_range = (farthest >= low[None, :, None]) & (farthest <= high[None, :, None])
    candidate = in_centre & in_range & valid[:, None, :]
    area = box_area(boxes)[:, None, :].expand_as(candidate)
    area = torch.where(candidate, area, torch.full_like(area, float("inf")))
    best_area, best = area.min(-1)
    matched_boxes = boxes.gather(1, best[..., None].expand(-1, -1, 4))
    matched_classes = classes.gather(1, best).long()
    return torch.isfinite(best_area), matched_classes, matched_boxes


class FCOSLoss(nn.Module):
    def __init__(self, num_classes: int, strides: tuple[int, ...], config: LossConfig | dict | None = None) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.strides = tuple(strides)
        self.config = LossConfig.coerce(config)

    def forward(
        self, raw: torch.Tensor, targets: torch.Tensor, points: torch.Tensor, point_strides: torch.Tensor
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Total loss and its detached terms for raw output [B, A, 5 + C] and targets [B, M, 5]."""
        cfg = self.config
        raw = raw.float()
        positive, classes, gt_boxes = assign(targets, points, point_strides, self.strides, cfg.center_radius)
        num_pos = positive.sum().clamp_min(1).float()
        cls_logits = raw[..., 5:]
        one_hot = torch.zeros_like(cls_logits)
        one_hot[positive] = F.one_hot(classes[positive], self.num_classes).to(one_hot)

        pred_boxes = distances_to_boxes(points[None], raw[..., :4])[positive]
        pos_points = points[None].expand(raw.shape[0], -1, -1)[positive]
        ctr_target = centerness(boxes_to_distances(pos_points, gt_boxes[positive]))
        if cfg.cls_loss is ClassLoss.QUALITY_FOCAL:
            quality = torch.zeros_like(one_hot)
            iou = paired_iou(pred_boxes.detach(), gt_boxes[positive])[0].clamp_min(0)
            quality[positive] = one_hot[positive] * iou[:, None]
            cls_loss = quality_focal_loss(cls_logits, quality, cfg.focal_gamma).sum() / num_pos
        else:
            cls_loss = sigmoid_focal_loss(cls_logits, one_hot, cfg.focal_alpha, cfg.focal_gamma).sum() / num_pos
        box_terms = BOX_LOSSES[cfg.box_loss](pred_boxes, gt_boxes[positive])
        box_loss = (box_terms * ctr_target).sum() / ctr_target.sum().clamp_min(1e-6)
        ctr_loss = F.binary_cross_entropy_with_logits(raw[..., 4][positive], ctr_target, reduction="sum") / num_pos
        total = cls_loss + cfg.box_weight * box_loss + cfg.centerness_weight * ctr_loss
        terms = {"cls": cls_loss.detach(), "box": box_loss.detach(), "ctr": ctr_loss.detach(), "positives": num_pos}
        return total, terms
