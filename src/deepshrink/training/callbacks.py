"""Training state handed to callbacks, the default objective, and hook dispatch.

A callback is any object with some of these optional methods (pruning masks, QAT observers and
sparsity regularisers plug in here):

- `on_train_start(state)`, `on_epoch_start(state)`, `on_step_end(state)` (after the optimiser and
  scheduler step), `on_epoch_end(state)` (before the checkpoint is written, so changes such as
  zeroed filters are saved), `on_train_end(state)`;
- `extra_loss(state) -> Tensor | None`: a term added to the objective's loss every step (e.g. an
  L1 penalty on BatchNorm scales);
- `state_dict()` / `load_state_dict(d)`: saved in and restored from the checkpoint (tensors,
  numbers, strings and containers only).

An objective is a callable `objective(model, images, labels) -> (loss, logits)`. Under DDP it
receives the DistributedDataParallel wrapper (forward must go through it); `state.model` is always
the bare model. The engine never changes the objective's train/eval mode (a teacher stays as given)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F

from deepshrink.errors import CheckpointError, ConfigError
from deepshrink.training.config import TrainConfig

HOOKS = ("on_train_start", "on_epoch_start", "on_step_end", "on_epoch_end", "on_train_end")


@dataclass
class TrainState:
    model: nn.Module  # the bare model (never the DDP wrapper)
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    config: TrainConfig
    objective: Any
    epoch: int = 0  # index of the current epoch, from 0
    step: int = 0  # optimiser steps done since the start of training
    history: list[dict] = field(default_factory=list)
    loss: torch.Tensor | None = None  # last step's loss, detached (reading it syncs CUDA)
    rank: int = 0
    world_size: int = 1


class CrossEntropyObjective(nn.Module):
    """Cross-entropy on the model's logits, with optional label smoothing."""

    def __init__(self, label_smoothing: float = 0.0) -> None:
        super().__init__()
        if not 0.0 <= label_smoothing < 1.0:
            raise ConfigError(f"label_smoothing: must be in [0, 1), got {label_smoothing}")
        self.label_smoothing = float(label_smoothing)

    def forward(
        self, model: nn.Module, images: torch.Tensor, labels: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        logits = model(images)
        return F.cross_entropy(logits, labels, label_smoothing=self.label_smoothing), logits

    def extra_repr(self) -> str:
        return f"label_smoothing={self.label_smoothing}"


class Callbacks:
    """Dispatches hooks to the callbacks that define them (looked up once, not every step)."""

    def __init__(self, callbacks: Iterable[Any]) -> None:
        self.items = tuple(callbacks)
        self._hooks = {h: [getattr(c, h) for c in self.items if callable(getattr(c, h, None))] for h in HOOKS}
        self._extra = [c.extra_loss for c in self.items if callable(getattr(c, "extra_loss", None))]
        self._stateful = [c for c in self.items if callable(getattr(c, "state_dict", None))]

    def fire(self, hook: str, state: TrainState) -> None:
        for fn in self._hooks[hook]:
            fn(state)

    def has_extra_loss(self) -> bool:
        return bool(self._extra)

    def extra_loss(self, state: TrainState) -> torch.Tensor | None:
        total = None
        for fn in self._extra:
            term = fn(state)
            if term is not None:
                total = term if total is None else total + term
        return total

    def state_dict(self) -> list[Any]:
        return [c.state_dict() for c in self._stateful]

    def load_state_dict(self, states: list[Any], source: str) -> None:
        if len(states) != len(self._stateful):
            raise CheckpointError(
                f"{source}: holds state for {len(states)} callbacks, this run has {len(self._stateful)} stateful ones"
            )
        for callback, saved in zip(self._stateful, states):
            callback.load_state_dict(saved)
