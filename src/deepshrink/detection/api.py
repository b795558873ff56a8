"""`train_detector` and `distill_detector`: the training engine with the detection objective, EMA
weights and validation mAP. Warm-up, schedules, checkpoints, resume and DDP are the engine's.

The engine is given the bundle with an empty val split (its own validation is cross-entropy on
class logits) and `augment=False` (its augmentation moves pixels without their boxes); the
`MapEvaluator` callback scores the real val split and the objective augments boxes and pixels
together. History records gain `val_map50` and `val_map50_95`."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Iterable, Sequence
from typing import Any

import torch
import torch.nn as nn

from deepshrink.data import sample_loader
from deepshrink.detection.callbacks import MapEvaluator, ModelEMA
from deepshrink.detection.config import DetectTrainOptions
from deepshrink.detection.dataset import DetectionBundle
from deepshrink.detection.distill import NECK_TAPS, DetectionDistillObjective
from deepshrink.detection.letterbox import PAD_VALUE
from deepshrink.detection.models import STRIDES
from deepshrink.detection.objective import DetectionObjective
from deepshrink.errors import ConfigError
from deepshrink.training import TrainConfig, TrainResult, train


def pad_fill(mean: Sequence[float], std: Sequence[float]) -> tuple[float, ...]:
    """The letterbox gray after normalisation: what augmentation paints uncovered pixels with."""
    return tuple((PAD_VALUE / 255.0 - m) / s for m, s in zip(mean, std))


def detection_objective(
    model: nn.Module, data: DetectionBundle, options: DetectTrainOptions, seed: int
) -> DetectionObjective:
    num_classes = getattr(model, "num_classes", data.num_classes)
    if num_classes != data.num_classes:
        raise ConfigError(f"model predicts {num_classes} classes, the data '{data.name}' has {data.num_classes}")
    return DetectionObjective(num_classes, tuple(getattr(model, "strides", STRIDES)), loss=options.loss,
                              augment=options.augment, fill=pad_fill(data.mean, data.std), seed=seed)


def _run(model: nn.Module, data: DetectionBundle, config: Any, options: DetectTrainOptions, objective: nn.Module,
         callbacks: Iterable[Any], out_dir: str | os.PathLike | None, resume: bool) -> TrainResult:
    if not isinstance(data, DetectionBundle):
        raise ConfigError(f"data: expected a DetectionBundle (load_detection), got {type(data).__name__}")
    config = TrainConfig.coerce(config).model_copy(update={"augment": False})
    ema = ModelEMA(options.ema_decay, options.ema_tau) if options.ema else None
    evaluator = MapEvaluator(data, ema=ema, every=options.eval_every, limit=options.eval_limit,
                             postprocess=options.postprocess)
    engine_data = dataclasses.replace(data, val=data.val.take(torch.zeros(0, dtype=torch.int64)))
    own = [ema] if ema is not None else []
    return train(model, engine_data, config, objective=objective, callbacks=[*own, evaluator, *callbacks],
                 out_dir=out_dir, resume=resume)


def train_detector(
    model: nn.Module,
    data: DetectionBundle,
    config: TrainConfig | dict[str, Any] | None = None,
    *,
    options: DetectTrainOptions | dict[str, Any] | None = None,
    callbacks: Iterable[Any] = (),
    out_dir: str | os.PathLike | None = None,
    resume: bool = False,
) -> TrainResult:
    """Train a detector on `data.train` with FCOS losses; returns the engine's TrainResult (the
    model carries the EMA weights when `options.ema`)."""
    opts = DetectTrainOptions.coerce(options)
    seed = TrainConfig.coerce(config).seed
    objective = detection_objective(model, data, opts, seed)
    return _run(model, data, config, opts, objective, callbacks, out_dir, resume)


def distill_detector(
    student: nn.Module,
    teacher: nn.Module,
    data: DetectionBundle,
    config: TrainConfig | dict[str, Any] | None = None,
    *,
    options: DetectTrainOptions | dict[str, Any] | None = None,
    taps: Sequence[str] = NECK_TAPS,
    feature_weight: float = 1.0,
    logit_weight: float = 1.0,
    temperature: float = 1.0,
    adapter_images: int = 64,
    callbacks: Iterable[Any] = (),
    out_dir: str | os.PathLike | None = None,
    resume: bool = False,
) -> TrainResult:
    """Train `student` with its FCOS losses plus neck-feature imitation and class-logit KD from
    `teacher` (e.g. the unpruned detector); see `deepshrink.detection.distill`. The imitation
    adapters start at their least-squares fit on `adapter_images` un-augmented training images
    (0: a random start)."""
    for name, value in (("feature_weight", feature_weight), ("logit_weight", logit_weight)):
        if value < 0:
            raise ConfigError(f"{name} must be >= 0, got {value}")
    if temperature <= 0:
        raise ConfigError(f"temperature must be > 0, got {temperature}")
    if adapter_images < 0:
        raise ConfigError(f"adapter_images must be >= 0 (0: random adapters), got {adapter_images}")
    opts = DetectTrainOptions.coerce(options)
    seed = TrainConfig.coerce(config).seed
    device = next((p.device for p in student.parameters()), torch.device("cpu"))
    teacher = teacher.to(device).eval()
    example = torch.zeros(1, *data.input_size, device=device)
    calibration = next(iter(sample_loader(data, adapter_images, seed=seed, device=device)))[0] if adapter_images else None
    objective = DetectionDistillObjective(
        detection_objective(student, data, opts, seed), student, teacher, taps=taps, feature_weight=feature_weight,
        logit_weight=logit_weight, temperature=temperature, example=example, calibration=calibration,
    )
    try:
        return _run(student, data, config, opts, objective, callbacks, out_dir, resume)
    finally:
        objective.close()
