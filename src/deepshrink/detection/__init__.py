"""Object detection: data (`yolo:`, `voc:`, `coco:` specs, letterboxed and cached), box-aware
augmentation, FCOS detectors in the model zoo (`fcos_resnet`, `fcos_mobilenet_v2`), losses, the
training objective, EMA and mAP callbacks, decode + NMS, COCO mAP through pycocotools, ONNX export
and a profile with and without NMS.

Names are imported lazily, so the zoo can register the detectors (`deepshrink.detection.models`)
without pulling in the data, metrics and export layers."""

from __future__ import annotations

import importlib
from typing import Any

_NAMES = {
    "AugmentConfig": "config", "BoxLoss": "config", "ClassLoss": "config", "DetectTrainOptions": "config",
    "LossConfig": "config", "PostprocessConfig": "config",
    "DetectionBundle": "dataset", "DetectionSet": "dataset", "DetectionSpec": "dataset", "load_detection": "dataset",
    "is_detection_spec": "dataset",
    "BatchAugment": "augment", "affine": "augment", "hflip": "augment", "mosaic": "augment",
    "FCOS": "models", "anchor_points": "models", "build_fcos": "models",
    "FCOSLoss": "losses", "assign": "losses",
    "DetectionObjective": "objective", "DetectionDistillObjective": "distill",
    "MapEvaluator": "callbacks", "ModelEMA": "callbacks",
    "MapResult": "metrics", "coco_map": "metrics",
    "evaluate_detector": "evaluation", "evaluate_onnx_detector": "evaluation",
    "batched_nms": "decoding", "decode": "decoding", "nms": "decoding", "postprocess": "decoding",
    "export_detector": "export", "profile_detector": "export",
    "distill_detector": "api", "train_detector": "api",
    "unmap_boxes": "letterbox",
}

__all__ = sorted(_NAMES)


def __getattr__(name: str) -> Any:
    if name in _NAMES:
        return getattr(importlib.import_module(f"deepshrink.detection.{_NAMES[name]}"), name)
    raise AttributeError(f"module 'deepshrink.detection' has no attribute '{name}'")
