"""mAP through pycocotools on hand-made predictions, against values computed by hand."""

from __future__ import annotations

import pytest
import torch

from deepshrink.detection import coco_map
from deepshrink.errors import DataError

A, B = [10.0, 10.0, 50.0, 50.0], [60.0, 60.0, 100.0, 100.0]


def gt(boxes, classes):
    return torch.tensor(boxes), torch.tensor(classes)


def dets(rows):
    return torch.tensor(rows, dtype=torch.float32).reshape(-1, 6)


def test_perfect_predictions_score_100() -> None:
    truth = [gt([A, B], [0, 1]), gt([B], [1])]
    preds = [dets([[*A, 0.9, 0], [*B, 0.8, 1]]), dets([[*B, 0.7, 1]])]
    result = coco_map(preds, truth, ["car", "bus"])
    assert result.map50 == pytest.approx(100.0) and result.map50_95 == pytest.approx(100.0)
    assert result.per_class == {"car": {"ap50": 100.0, "ap": 100.0}, "bus": {"ap50": 100.0, "ap": 100.0}}


def test_a_missed_class_halves_the_mean_and_a_class_without_truth_has_no_ap() -> None:
    # car found perfectly, bus (present) never predicted: (100 + 0) / 2; truck has no ground truth.
    result = coco_map([dets([[*A, 0.9, 0]])], [gt([A, B], [0, 1])], ["car", "bus", "truck"])
    assert result.map50 == pytest.approx(50.0) and result.map50_95 == pytest.approx(50.0)
    assert result.per_class["bus"] == {"ap50": 0.0, "ap": 0.0}
    assert result.per_class["truck"] == {"ap50": None, "ap": None}


def test_precision_recall_curve_matches_the_101_point_interpolation() -> None:
    # Two objects; ranked detections: hit (0.9), miss (0.8), hit (0.7). Recall 0.5 at precision 1,
    # recall 1 at precision 2/3. COCO samples recall 0, 0.01, ..., 1: the 51 points up to 0.50
    # take precision 1, the 50 above take 2/3 -> AP = (51 + 50 * 2/3) / 101.
    preds = [dets([[*A, 0.9, 0], [200, 200, 220, 220, 0.8, 0], [*B, 0.7, 0]])]
    result = coco_map(preds, [gt([A, B], [0, 0])], ["car"])
    expected = 100.0 * (51 + 50 * 2 / 3) / 101
    assert result.map50 == pytest.approx(expected) and result.map50_95 == pytest.approx(expected)


def test_loose_box_counts_at_low_iou_thresholds_only() -> None:
    # IoU 0.72 with its object: a hit at thresholds 0.50..0.70 (5 of 10), a miss above.
    result = coco_map([dets([[0, 0, 10, 7.2, 0.9, 0]])], [gt([[0, 0, 10, 10]], [0])], ["car"])
    assert result.map50 == pytest.approx(100.0)
    assert result.map50_95 == pytest.approx(50.0)


def test_no_detections_scores_zero_and_bad_shapes_are_errors() -> None:
    result = coco_map([dets([])], [gt([A], [0])], ["car", "bus"])
    assert (result.map50, result.map50_95, result.detections) == (0.0, 0.0, 0)
    assert result.per_class == {"car": {"ap50": 0.0, "ap": 0.0}, "bus": {"ap50": None, "ap": None}}
    with pytest.raises(DataError, match=r"detections must be \[K, 6\]"):
        coco_map([torch.zeros(2, 5)], [gt([A], [0])], ["car"])
    with pytest.raises(DataError, match=r"2 prediction lists for 1 images"):
        coco_map([dets([]), dets([])], [gt([A], [0])], ["car"])
