"""Box maths, losses, NMS and decoding against hand-computed values and a brute-force reference."""

from __future__ import annotations

import math

import pytest
import torch

from deepshrink.detection import PostprocessConfig, anchor_points, assign, batched_nms, nms, postprocess
from deepshrink.detection.primitives import (
    box_iou,
    centerness,
    ciou_loss,
    cxcywh_to_xyxy,
    giou_loss,
    quality_focal_loss,
    sigmoid_focal_loss,
)


def test_iou_giou_ciou_known_values() -> None:
    a = torch.tensor([[0.0, 0, 10, 10]])
    b = torch.tensor([[5.0, 0, 15, 10], [20, 0, 30, 10]])
    assert box_iou(a, b)[0].tolist() == pytest.approx([50 / 150, 0.0])
    # Overlapping: the enclosing box is the union, GIoU = IoU = 1/3. Disjoint boxes 10 apart: IoU 0,
    # union 200, enclosing box 300 -> GIoU = -100/300, loss 4/3.
    assert giou_loss(a.expand(2, 4), b).tolist() == pytest.approx([2 / 3, 4 / 3])
    assert giou_loss(a, a).item() == pytest.approx(0.0) and ciou_loss(a, a).item() == pytest.approx(0.0, abs=1e-6)
    # Same shape, centres 5 apart, enclosing diagonal^2 = 15^2 + 10^2: CIoU loss = 1 - IoU + 25 / 325.
    assert ciou_loss(a, b[:1]).item() == pytest.approx(1 - 1 / 3 + 25 / 325, rel=1e-5)
    assert cxcywh_to_xyxy(torch.tensor([5.0, 5, 10, 4])).tolist() == [0, 3, 10, 7]


def test_centerness_and_focal_values() -> None:
    assert centerness(torch.tensor([[2.0, 3, 2, 3], [1, 1, 3, 1]])).tolist() == pytest.approx([1.0, math.sqrt(1 / 3)])
    logits, targets = torch.tensor([0.0, 0.0]), torch.tensor([1.0, 0.0])
    # p = 0.5: CE = ln 2, modulation 0.5^2, alpha 0.25 (positive) / 0.75 (negative).
    expected = [0.25 * 0.25 * math.log(2), 0.75 * 0.25 * math.log(2)]
    assert sigmoid_focal_loss(logits, targets, 0.25, 2.0).tolist() == pytest.approx(expected)
    assert quality_focal_loss(torch.tensor([0.0]), torch.tensor([0.5]), 2.0).item() == pytest.approx(0.0)


def _reference_nms(boxes, scores, threshold):
    order = sorted(range(len(scores)), key=lambda i: -scores[i])
    kept = []
    for i in order:
        if all(box_iou(boxes[i : i + 1], boxes[j : j + 1]).item() <= threshold for j in kept):
            kept.append(i)
    return kept


def test_nms_matches_brute_force_and_classes_stay_apart() -> None:
    generator = torch.Generator().manual_seed(0)
    xy = torch.rand(60, 2, generator=generator) * 50
    boxes = torch.cat([xy, xy + 10 + torch.rand(60, 2, generator=generator) * 20], dim=1)
    scores = torch.rand(60, generator=generator)
    full = nms(boxes, scores, 0.5).tolist()
    assert full == _reference_nms(boxes, scores, 0.5)
    assert nms(boxes, scores, 0.5, max_keep=5).tolist() == full[:5]  # stopping early keeps the same prefix
    twin = torch.tensor([[0.0, 0, 10, 10], [0, 0, 10, 10]])
    assert nms(twin, torch.tensor([0.9, 0.8]), 0.5).tolist() == [0]
    assert batched_nms(twin, torch.tensor([0.9, 0.8]), torch.tensor([0, 1]), 0.5).tolist() == [0, 1]


def test_postprocess_decodes_a_planted_detection() -> None:
    points, strides = anchor_points(64, 64)
    assert points.shape == (64 + 16 + 4, 2) and points[0].tolist() == [4.0, 4.0] and strides[-1] == 32
    raw = torch.full((1, points.shape[0], 5 + 3), -10.0)
    raw[..., :4] = 1.0
    index = 9  # the point at (12, 12) on the stride-8 level
    raw[0, index, :4] = torch.tensor([4.0, 2.0, 6.0, 8.0])
    raw[0, index, 4] = 10.0
    raw[0, index, 5 + 2] = 10.0
    out = postprocess(raw, (64, 64), PostprocessConfig(score_threshold=0.5))
    assert len(out) == 1 and out[0].shape == (1, 6)
    assert out[0][0, :4].tolist() == [8.0, 10.0, 18.0, 20.0] and out[0][0, 5].item() == 2
    assert out[0][0, 4].item() == pytest.approx(torch.sigmoid(torch.tensor(10.0)).item())


def test_assignment_takes_the_smallest_box_and_respects_level_ranges() -> None:
    points, strides = anchor_points(64, 64)
    targets = torch.tensor([[[0, 0, 0, 64, 64], [1, 8, 8, 24, 24], [-1, 0, 0, 0, 0]]])
    positive, classes, boxes = assign(targets, points, strides, (8, 16, 32), 1.5)
    small = positive[0, :64] & (classes[0, :64] == 1)
    assert small.any() and (boxes[0, :64][small] == torch.tensor([8.0, 8, 24, 24])).all()
    # The 64 px box's farthest edge is 32-64 px from its centre points: stride-8 range only (0-64);
    # points on the stride-32 level are positives only if 64 <= ... which it is not.
    assert not positive[0, 80:].any()
