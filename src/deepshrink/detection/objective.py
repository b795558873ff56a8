"""The detection objective for the training engine: `objective(model, images, targets)`.

The engine's BatchLoader only knows classification augmentation (crop and flip of pixels alone),
so `train_detector` switches it off and box-aware augmentation happens here, on the batch, before
the forward pass. Its randomness is a pure function of (seed, call count, rank); the call count is
a buffer, saved in the engine's checkpoint, so a resumed run draws the same augmentations."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.distributed as dist
import torch.nn as nn

from deepshrink.data.loader import derive_seed
from deepshrink.detection.augment import BatchAugment
from deepshrink.detection.config import AugmentConfig, LossConfig
from deepshrink.detection.losses import FCOSLoss
from deepshrink.detection.models import STRIDES, anchor_points


class PointCache:
    """Anchor points per (height, width, device), computed once."""

    def __init__(self, strides: tuple[int, ...]) -> None:
        self.strides = strides
        self._cache: dict[tuple, tuple[torch.Tensor, torch.Tensor]] = {}

    def __call__(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        key = (images.shape[-2], images.shape[-1], images.device)
        if key not in self._cache:
            self._cache[key] = anchor_points(key[0], key[1], self.strides, images.device)
        return self._cache[key]


class DetectionObjective(nn.Module):
    """FCOS losses on the model's raw output; returns (loss, None): there are no class logits for
    the engine's top-1 (its `train_top1` column stays 0 for detectors)."""

    def __init__(
        self,
        num_classes: int,
        strides: tuple[int, ...] = STRIDES,
        *,
        loss: LossConfig | dict | None = None,
        augment: AugmentConfig | dict | None = None,
        fill: Sequence[float] | float = 0.0,
        seed: int = 0,
    ) -> None:
        super().__init__()
        self.criterion = FCOSLoss(num_classes, strides, loss)
        self.augment = BatchAugment(augment, fill) if augment is not None else None
        self.points = PointCache(tuple(strides))
        self.seed = int(seed)
        self.register_buffer("calls", torch.zeros((), dtype=torch.int64))
        self.last_terms: dict[str, torch.Tensor] = {}

    def prepare(self, model: nn.Module, images: torch.Tensor, targets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The batch the model trains on: augmented while the model is in training mode."""
        if self.augment is None or not model.training:
            return images, targets
        rank = dist.get_rank() if dist.is_available() and dist.is_initialized() else 0
        generator = torch.Generator().manual_seed(derive_seed(self.seed, int(self.calls), rank))
        self.calls += 1
        return self.augment(images, targets, generator)

    def task_loss(self, raw: torch.Tensor, images: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        points, point_strides = self.points(images)
        loss, self.last_terms = self.criterion(raw, targets, points, point_strides)
        return loss

    def forward(self, model: nn.Module, images: torch.Tensor, targets: torch.Tensor) -> tuple[torch.Tensor, None]:
        images, targets = self.prepare(model, images, targets)
        return self.task_loss(model(images), images, targets), None
