"""Typed training options. Built once at the edge (`TrainConfig(**options)` or `from_dict`); a bad
value raises ConfigError naming the field, so nothing downstream re-checks it."""

from __future__ import annotations

from enum import Enum
from typing import Any

from pydantic import ConfigDict, Field, model_validator

from deepshrink.configs import StrictConfig, format_errors  # noqa: F401  (format_errors re-exported)
from deepshrink.errors import ConfigError


class Optimizer(str, Enum):
    SGD = "sgd"
    ADAMW = "adamw"


class Schedule(str, Enum):
    COSINE = "cosine"
    STEP = "step"
    ONECYCLE = "onecycle"
    CONSTANT = "constant"


class Device(str, Enum):
    AUTO = "auto"
    CPU = "cpu"
    CUDA = "cuda"


# Default weight decay when none is given: the usual CIFAR SGD value, and AdamW's common 0.05.
DEFAULT_WEIGHT_DECAY = {Optimizer.SGD: 5e-4, Optimizer.ADAMW: 0.05}

# Fields that may change between a checkpoint and the run that resumes it: they do not change the
# trajectory of the weights up to the checkpoint (`epochs` may be extended; the schedule then
# follows the new length from the resume point on).
RESUME_FREE_FIELDS = frozenset({"epochs", "eval_every", "progress", "num_threads", "device"})


class TrainConfig(StrictConfig):
    """Options of `deepshrink.training.train`. Epochs are counted from 0; `milestones` and
    `warmup_epochs` are in epochs and converted to optimiser steps by the schedule."""

    model_config = ConfigDict(extra="forbid", frozen=True, use_enum_values=False)

    epochs: int = Field(30, ge=0, description="number of passes over the training set")
    batch_size: int = Field(128, ge=1, description="global batch (split evenly across DDP ranks)")
    optimizer: Optimizer = Optimizer.SGD
    lr: float = Field(0.1, gt=0, description="peak learning rate (after warm-up)")
    momentum: float = Field(0.9, ge=0, lt=1, description="SGD momentum, or AdamW beta1")
    nesterov: bool = False
    weight_decay: float | None = Field(None, ge=0, description="None: 5e-4 for SGD, 0.05 for AdamW")
    decay_norm_and_bias: bool = Field(False, description="also decay 1-D params (BN/LN scales, biases)")
    schedule: Schedule = Schedule.COSINE
    milestones: tuple[int, ...] | None = Field(None, description="step schedule epochs; None: 50 % and 75 %")
    gamma: float = Field(0.1, gt=0, le=1, description="step schedule decay factor")
    warmup_epochs: float = Field(0.0, ge=0, description="linear warm-up from lr/100 (cosine, step)")
    label_smoothing: float = Field(0.0, ge=0, lt=1)
    grad_clip: float | None = Field(None, gt=0, description="max global gradient norm, None: off")
    channels_last: bool = False
    amp: bool = Field(False, description="bf16 autocast; CUDA only")
    seed: int = Field(0, ge=0)
    limit_batches: int | None = Field(None, ge=1, description="cap batches per epoch (smoke runs)")
    eval_every: int = Field(1, ge=1, description="validate every N epochs and after the last one")
    augment: bool = True
    device: Device = Device.AUTO
    num_threads: int | None = Field(None, ge=1, description="torch CPU threads during training")
    progress: bool = Field(True, description="rich progress bar (only on a terminal, rank 0)")

    @model_validator(mode="after")
    def _check(self) -> "TrainConfig":
        if self.weight_decay is None:
            object.__setattr__(self, "weight_decay", DEFAULT_WEIGHT_DECAY[self.optimizer])
        if self.nesterov and (self.optimizer is not Optimizer.SGD or self.momentum == 0):
            raise ValueError("nesterov: needs optimizer 'sgd' with momentum > 0")
        if self.milestones is not None:
            if any(m <= 0 for m in self.milestones) or list(self.milestones) != sorted(set(self.milestones)):
                raise ValueError(f"milestones: must be positive and strictly increasing, got {list(self.milestones)}")
        if self.epochs and self.warmup_epochs > self.epochs:
            raise ValueError(f"warmup_epochs: {self.warmup_epochs} exceeds epochs ({self.epochs})")
        if self.amp and self.device is Device.CPU:
            raise ValueError("amp: bf16 autocast is CUDA only; use device 'cuda' or 'auto', or amp false")
        return self

    @classmethod
    def coerce(cls, config: "TrainConfig | dict[str, Any] | None") -> "TrainConfig":
        """A TrainConfig from itself, a dict of options (e.g. a recipe section) or None (defaults)."""
        if isinstance(config, cls):
            return config
        if config is None or isinstance(config, dict):
            return cls(**(config or {}))
        raise ConfigError(f"config: expected a TrainConfig or a dict, got {type(config).__name__}")

    def step_milestones(self) -> tuple[int, ...]:
        if self.milestones is not None:
            return self.milestones
        return tuple(m for m in (self.epochs // 2, (3 * self.epochs) // 4) if m > 0)

    def differing_fields(self, other: "TrainConfig") -> list[str]:
        """Fields (outside RESUME_FREE_FIELDS) whose values differ between two configs."""
        mine, theirs = self.model_dump(mode="json"), other.model_dump(mode="json")
        return [k for k in mine if k not in RESUME_FREE_FIELDS and mine[k] != theirs.get(k)]
