"""What a recipe's data makes of its steps: classification (top-1, cross-entropy training, the
distillation losses of `deepshrink.distillation`) or detection (`yolo:`, `voc:`, `coco:` data; mAP,
FCOS training, neck imitation + class-logit KD). Steps ask the task instead of calling one family's
trainer or evaluator themselves."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch.nn as nn

from deepshrink.errors import ConfigError

DETECTION_IMAGE_SIZE = 320  # letterbox side when a detection recipe gives no image_size
DETECTION_EVAL_BATCH = 16


class ClassificationTask:
    name = "classification"
    score = "top1"  # the metric a report ranks stages by
    latency_batches = (1, 64)

    def check_step(self, kind: str, options: Any) -> None:
        """Every step supports classification."""

    def load(self, spec: str, *, seed: int, image_size: int | None) -> Any:
        from deepshrink.data import load_data

        return load_data(spec, seed=seed, image_size=image_size)

    def check_spec(self, spec: str) -> None:
        from deepshrink.data.specs import DataSpec

        DataSpec.parse(spec)

    def evaluate(self, model: nn.Module, data: Any, *, split: str = "test", limit_batches: int | None = None) -> dict:
        from deepshrink.metrics import evaluate

        return evaluate(model, data, split=split, limit_batches=limit_batches)

    def evaluate_onnx(self, path: Path, data: Any, *, limit_batches: int | None = None) -> dict:
        from deepshrink.metrics import evaluate_onnx

        return evaluate_onnx(path, data, split="test", limit_batches=limit_batches)

    def train(self, model: nn.Module, data: Any, config: Any, *, out_dir: Path) -> Any:
        from deepshrink.training import train

        return train(model, data, config, out_dir=out_dir, resume=True)

    def distill(self, student: nn.Module, teachers: list[nn.Module], data: Any, config: Any, *, out_dir: Path) -> Any:
        from deepshrink.distillation import distill

        return distill(student, teachers, data, config, out_dir=out_dir, resume=True)


class DetectionTask:
    name = "detection"
    score = "map50"
    latency_batches = (1,)  # the deployment case; batch 64 at 320 px would dominate the run

    def check_step(self, kind: str, options: Any) -> None:
        """Before any work: what a detection recipe cannot do yet, named (ConfigError)."""
        reason = _detection_refusal(kind, options)
        if reason:
            raise ConfigError(f"detection data: {reason}")

    def load(self, spec: str, *, seed: int, image_size: int | None) -> Any:
        from deepshrink.detection import load_detection

        return load_detection(spec, image_size=image_size or DETECTION_IMAGE_SIZE, seed=seed)

    def check_spec(self, spec: str) -> None:
        from deepshrink.detection.dataset import DetectionSpec

        DetectionSpec.parse(spec)

    def _limit(self, limit_batches: int | None) -> int | None:
        return None if limit_batches is None else limit_batches * DETECTION_EVAL_BATCH

    def evaluate(self, model: nn.Module, data: Any, *, split: str = "test", limit_batches: int | None = None) -> dict:
        from deepshrink.detection import evaluate_detector

        result = evaluate_detector(model, data, split=split, batch_size=DETECTION_EVAL_BATCH, limit=self._limit(limit_batches))
        return _map_scores(result)

    def evaluate_onnx(self, path: Path, data: Any, *, limit_batches: int | None = None) -> dict:
        from deepshrink.detection import evaluate_onnx_detector

        result = evaluate_onnx_detector(path, data, split="test", batch_size=DETECTION_EVAL_BATCH,
                                        limit=self._limit(limit_batches))
        return _map_scores(result)

    def train(self, model: nn.Module, data: Any, config: Any, *, out_dir: Path) -> Any:
        from deepshrink.detection import train_detector

        return train_detector(model, data, config, out_dir=out_dir, resume=True)

    def distill(self, student: nn.Module, teachers: list[nn.Module], data: Any, config: Any, *, out_dir: Path) -> Any:
        """Neck imitation + class-logit KD from the one teacher (`check_step` refused the rest)."""
        from deepshrink.detection import distill_detector

        return distill_detector(student, teachers[0], data, config.train, temperature=config.temperature,
                                out_dir=out_dir, resume=True)


def _map_scores(result: Any) -> dict:
    return {"map50": result.map50, "map50_95": result.map50_95, "images": result.images}


def task_for(spec: str) -> ClassificationTask | DetectionTask:
    from deepshrink.detection import is_detection_spec

    return DetectionTask() if is_detection_spec(spec) else ClassificationTask()


def _detection_refusal(kind: str, options: Any) -> str | None:
    """Why a detection recipe cannot run this step yet, or None when it can."""
    from deepshrink.distillation.config import WeightMode

    if kind == "search":
        return "the architecture search scores classifiers; prune to a budget instead"
    if kind == "prune" and options.sensitivity is not None:
        return "the sensitivity curves score top-1; prune to a budget without `sensitivity`"
    if kind == "decompose" and options.finetune is not None:
        return "low-rank recovery fine-tunes with classification KD; decompose without `finetune`"
    if kind == "quantize" and options.method.value == "qat":
        return "QAT trains with cross-entropy; use method: ptq (keep the head predictions in float with keep_float)"
    if kind == "export" and any(fmt.value == "ncnn" for fmt in options.formats):
        return "ncnn export is verified by top-1; use formats onnx, onnx_int8"
    if kind != "distill":
        return None
    if len(options.teachers) != 1:
        return f"a detector distils from one teacher, got {len(options.teachers)}"
    if [spec.name for spec in options.losses] != ["kd"]:
        return ("losses: a detector distils by neck imitation + class-logit KD; the classification losses do not "
                "apply (leave `losses` out)")
    if options.weights is WeightMode.AUTO:
        return "weights: auto (seed 001 eq. 7) is for classifiers; leave `weights` out"
    return None
