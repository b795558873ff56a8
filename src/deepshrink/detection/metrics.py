"""COCO-style mAP through pycocotools, on predictions and ground truth held in memory.

Ground truth and detections are turned into COCO dicts (image ids 1..N, category ids 1..K) and
scored by `COCOeval` with its defaults (IoU 0.50:0.05:0.95, 101 recall points, 100 detections per
image, area "all"). Values are in percent. A class without ground truth has no AP (None) and is
left out of the means, as COCOeval does."""

from __future__ import annotations

import contextlib
import io
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from deepshrink.detection.primitives import xyxy_to_xywh
from deepshrink.errors import DataError

MAX_DETECTIONS = 100


@dataclass
class MapResult:
    map50: float  # mAP at IoU 0.5, percent
    map50_95: float  # mAP averaged over IoU 0.50:0.05:0.95, percent
    per_class: dict[str, dict[str, float | None]] = field(default_factory=dict)  # name -> {"ap50", "ap"}
    images: int = 0
    detections: int = 0

    def to_dict(self) -> dict:
        return {"map50": self.map50, "map50_95": self.map50_95, "per_class": self.per_class,
                "images": self.images, "detections": self.detections}


def _coco_dicts(
    detections: Sequence[torch.Tensor], ground_truth: Sequence[tuple[torch.Tensor, torch.Tensor]], num_classes: int
) -> tuple[dict, list[dict]]:
    images, annotations, results = [], [], []
    for image_id, ((boxes, classes), dets) in enumerate(zip(ground_truth, detections), 1):
        images.append({"id": image_id})
        for box, cls in zip(xyxy_to_xywh(boxes.float()).tolist(), classes.tolist()):
            annotations.append({"id": len(annotations) + 1, "image_id": image_id, "category_id": int(cls) + 1,
                                "bbox": box, "area": box[2] * box[3], "iscrowd": 0})
        if dets.numel():
            dets = dets.float()
            for box, score, cls in zip(xyxy_to_xywh(dets[:, :4]).tolist(), dets[:, 4].tolist(), dets[:, 5].tolist()):
                results.append({"image_id": image_id, "category_id": int(cls) + 1, "bbox": box, "score": score})
    categories = [{"id": k + 1, "name": str(k)} for k in range(num_classes)]
    return {"images": images, "annotations": annotations, "categories": categories}, results


def coco_map(
    detections: Sequence[torch.Tensor],
    ground_truth: Sequence[tuple[torch.Tensor, torch.Tensor]],
    classes: Sequence[str],
) -> MapResult:
    """mAP of `detections` (per image, [K, 6] = x1, y1, x2, y2, score, class) against
    `ground_truth` (per image, (boxes [n, 4], classes [n])), all in the same pixel frame."""
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    if len(detections) != len(ground_truth):
        raise DataError(f"mAP: {len(detections)} prediction lists for {len(ground_truth)} images")
    for dets in detections:
        if dets.dim() != 2 or dets.shape[1] != 6:
            raise DataError(f"mAP: detections must be [K, 6] (x1, y1, x2, y2, score, class), got {tuple(dets.shape)}")
    gt_dict, results = _coco_dicts(detections, ground_truth, len(classes))
    names = [str(c) for c in classes]
    if not results:  # COCO.loadRes rejects an empty list; nothing detected scores 0 wherever there is ground truth
        present = {a["category_id"] - 1 for a in gt_dict["annotations"]}
        per_class = {n: ({"ap50": 0.0, "ap": 0.0} if k in present else {"ap50": None, "ap": None})
                     for k, n in enumerate(names)}
        return MapResult(0.0, 0.0, per_class, len(ground_truth), 0)
    with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints progress and the summary table
        gt = COCO()
        gt.dataset = gt_dict
        gt.createIndex()
        evaluator = COCOeval(gt, gt.loadRes(results), iouType="bbox")
        evaluator.params.maxDets = [1, 10, MAX_DETECTIONS]
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    # precision: [IoU thresholds, recall points, classes, areas, maxDets]; -1 where undefined.
    precision = evaluator.eval["precision"][:, :, :, 0, -1]
    per_class = {}
    for k, name in enumerate(names):
        ap50, ap = _mean_defined(precision[0, :, k]), _mean_defined(precision[:, :, k])
        per_class[name] = {"ap50": ap50, "ap": ap}
    return MapResult(
        map50=100.0 * max(float(evaluator.stats[1]), 0.0),
        map50_95=100.0 * max(float(evaluator.stats[0]), 0.0),
        per_class=per_class,
        images=len(ground_truth),
        detections=len(results),
    )


def _mean_defined(values: np.ndarray) -> float | None:
    defined = values[values > -1]
    return round(100.0 * float(defined.mean()), 4) if defined.size else None
