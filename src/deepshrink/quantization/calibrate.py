"""Calibration: feed a few hundred images through the model so each activation quantiser's
observer can choose its range; and the calibration-set helpers shared by PTQ, bias correction,
mixed precision and the ONNX Runtime baseline."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch
import torch.nn as nn

from deepshrink.errors import DataError
from deepshrink.quantization.act_quant import ActQuant
from deepshrink.quantization.config import Advanced, ObserverName
from deepshrink.quantization.observers import OBSERVERS
from deepshrink.quantization.prepare import act_quantizers


def calibration_batches(data: Any, size: int, batch_size: int = 64) -> list[torch.Tensor]:
    """At most `size` normalised images from `data`, in batches of `batch_size`. `data` is a
    float tensor [N, C, H, W], a DataBundle (its train split, normalised with its mean/std), or
    an iterable of tensors or (images, labels) batches (a BatchLoader)."""
    if is_bundle(data):
        from deepshrink.data import sample_loader

        data = sample_loader(data, batch_size)
    if isinstance(data, torch.Tensor):
        if data.dim() < 2:
            raise DataError(f"calibration data: expected a batch of inputs [N, ...], got shape {tuple(data.shape)}")
        data = data.split(batch_size)
    elif not isinstance(data, Iterable):
        raise DataError(f"calibration data: expected a tensor, a DataBundle or an iterable of batches, got {type(data).__name__}")
    batches, count = [], 0
    for batch in data:
        images = batch[0] if isinstance(batch, (tuple, list)) else batch
        if not isinstance(images, torch.Tensor):
            raise DataError(f"calibration data: batches must be tensors or (images, labels), got {type(images).__name__}")
        images = images[: size - count].float()
        if images.shape[0]:
            batches.append(images)
            count += images.shape[0]
        if count >= size:
            break
    if count == 0:
        raise DataError("calibration data is empty: give at least one image (e.g. a few hundred from the train split)")
    return batches


def is_bundle(data: Any) -> bool:
    return all(hasattr(data, a) for a in ("train", "mean", "std", "num_classes"))


@torch.no_grad()
def calibrate(model: nn.Module, batches: list[torch.Tensor], observer: ObserverName | str, options: Advanced) -> int:
    """Run the calibration passes the observer needs and fix every activation quantiser's range.
    Returns how many quantisers were calibrated."""
    name = observer.value if isinstance(observer, ObserverName) else observer
    factory = OBSERVERS.get(name)
    quantizers: list[ActQuant] = list(act_quantizers(model).values())
    observers = [factory(q.grid, options) for q in quantizers]
    for q, obs in zip(quantizers, observers):
        q.begin_calibration(obs)
    training = model.training
    model.eval()
    try:
        for pass_index in range(max((o.passes for o in observers), default=1)):
            for q in quantizers:
                q.pass_index = pass_index
            for images in batches:
                model(images)
    finally:
        for q in quantizers:
            q.end_calibration()
        model.train(training)
    return len(quantizers)


def run_batches(model: nn.Module, batches: list[torch.Tensor]) -> torch.Tensor:
    """Concatenated eval-mode outputs of `model` on `batches`."""
    training = model.training
    model.eval()
    try:
        with torch.no_grad():
            return torch.cat([model(b) for b in batches])
    finally:
        model.train(training)
