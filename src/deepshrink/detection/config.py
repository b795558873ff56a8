"""Typed options of the detection family, validated when built: a bad value raises ConfigError
naming the field (through `coerce`), so nothing downstream re-checks it."""

from __future__ import annotations

from enum import Enum
from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from deepshrink.errors import ConfigError
from deepshrink.training.config import format_errors

C = TypeVar("C", bound="_Options")


class _Options(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    @classmethod
    def coerce(cls: type[C], value: C | dict[str, Any] | None) -> C:
        """An instance from itself, a dict (e.g. a recipe section) or None (defaults)."""
        if isinstance(value, cls):
            return value
        if value is not None and not isinstance(value, dict):
            raise ConfigError(f"{cls.__name__}: expected a dict or {cls.__name__}, got {type(value).__name__}")
        try:
            return cls.model_validate(value or {})
        except ValidationError as exc:
            raise ConfigError(f"invalid {cls.__name__}: {format_errors(exc, cls)}") from None


class ClassLoss(str, Enum):
    FOCAL = "focal"  # sigmoid focal loss on one-hot targets (Lin et al. 2017)
    QUALITY_FOCAL = "quality_focal"  # targets are the IoU of the predicted box (GFL, Li et al. 2020)


class BoxLoss(str, Enum):
    GIOU = "giou"
    CIOU = "ciou"


class AugmentConfig(_Options):
    """Box-aware batch augmentation (train only). One random affine per image: scale jitter
    (s < 1 shrinks and pads, s > 1 is a random crop), translation and horizontal flip; boxes are
    clipped and dropped when less than `min_visible` of their area stays in the image."""

    flip: float = Field(0.5, ge=0, le=1, description="probability of a horizontal flip")
    scale: tuple[float, float] = Field((0.75, 1.25), description="range of the zoom factor")
    translate: float = Field(0.1, ge=0, lt=1, description="max shift as a fraction of the image side")
    mosaic: float = Field(0.0, ge=0, le=1, description="probability that an image becomes a 2x2 mosaic")
    min_visible: float = Field(0.3, gt=0, le=1, description="min kept fraction of a clipped box's area")
    min_size: float = Field(2.0, ge=0, description="min side in pixels of a kept box")


class LossConfig(_Options):
    """FCOS losses: classification, box regression (weighted by centerness) and centerness."""

    cls_loss: ClassLoss = ClassLoss.FOCAL
    box_loss: BoxLoss = BoxLoss.GIOU
    focal_alpha: float = Field(0.25, ge=0, le=1)
    focal_gamma: float = Field(2.0, ge=0)
    box_weight: float = Field(1.0, ge=0)
    centerness_weight: float = Field(1.0, ge=0)
    center_radius: float = Field(1.5, gt=0, description="center sampling radius in strides")


class PostprocessConfig(_Options):
    """Decode + non-maximum suppression: the documented post-process of the exported network."""

    score_threshold: float = Field(0.05, ge=0, lt=1)
    iou_threshold: float = Field(0.6, gt=0, le=1)
    pre_nms_topk: int = Field(1000, ge=1, description="candidates per image entering NMS")
    max_detections: int = Field(100, ge=1, description="detections kept per image")
    class_agnostic: bool = Field(False, description="suppress across classes too")


class DetectTrainOptions(_Options):
    """What `train_detector` adds to the engine's TrainConfig."""

    augment: AugmentConfig | None = AugmentConfig()
    loss: LossConfig = LossConfig()
    ema: bool = Field(True, description="keep an exponential moving average of the weights")
    ema_decay: float = Field(0.9998, gt=0, lt=1)
    ema_tau: float = Field(2000.0, gt=0, description="steps over which the EMA decay ramps up")
    eval_every: int = Field(1, ge=1, description="val mAP every N epochs (and after the last one)")
    eval_limit: int | None = Field(None, ge=1, description="val images used for mAP (None: all)")
    postprocess: PostprocessConfig = PostprocessConfig()
