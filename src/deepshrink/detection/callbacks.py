"""Training-engine callbacks for detectors: an exponential moving average of the weights and the
validation mAP after each epoch.

`ModelEMA` (the YOLOX/timm form): shadow = d * shadow + (1 - d) * weights after every optimiser
step, with d = decay * (1 - exp(-updates / tau)) so the average follows the weights closely while
they move fast early on; BatchNorm statistics are averaged too. Its state is saved in the engine's
checkpoint, so a resumed run continues the same average. At the end of training the averaged
weights are copied into the model (`apply_at_end`), which is what the engine returns."""

from __future__ import annotations

import copy
import math
from typing import Any

import torch
import torch.nn as nn

from deepshrink.detection.config import PostprocessConfig
from deepshrink.errors import CheckpointError


class ModelEMA:
    def __init__(self, decay: float = 0.9998, tau: float = 2000.0, *, apply_at_end: bool = True) -> None:
        self.decay, self.tau, self.apply_at_end = decay, tau, apply_at_end
        self.updates = 0
        self.shadow: dict[str, torch.Tensor] | None = None

    def on_train_start(self, state: Any) -> None:
        reference = state.model.state_dict()
        if self.shadow is None:
            self.shadow = {k: v.detach().clone() for k, v in reference.items()}
        else:  # restored from a checkpoint (on CPU): follow the model to its device
            self.shadow = {k: v.to(reference[k].device) for k, v in self.shadow.items()}

    @torch.no_grad()
    def on_step_end(self, state: Any) -> None:
        self.updates += 1
        d = self.decay * (1 - math.exp(-self.updates / self.tau))
        for name, value in state.model.state_dict().items():
            shadow = self.shadow[name]
            if shadow.dtype.is_floating_point:
                shadow.mul_(d).add_(value.detach(), alpha=1 - d)
            else:  # counters such as BatchNorm's num_batches_tracked
                shadow.copy_(value)

    def averaged(self, model: nn.Module) -> nn.Module:
        """A copy of `model` holding the averaged weights (the model itself is untouched)."""
        clone = copy.deepcopy(model)
        if self.shadow is not None:
            clone.load_state_dict(self.shadow)
        return clone

    def on_train_end(self, state: Any) -> None:
        if self.apply_at_end and self.shadow is not None:
            state.model.load_state_dict(self.shadow)

    def state_dict(self) -> dict:
        return {"updates": self.updates, "shadow": self.shadow or {}}

    def load_state_dict(self, saved: dict) -> None:
        if not isinstance(saved, dict) or "shadow" not in saved:
            raise CheckpointError("checkpoint holds no ModelEMA state")
        self.updates = int(saved["updates"])
        self.shadow = dict(saved["shadow"]) or None


class MapEvaluator:
    """After every `every` epochs (and the last), mAP on `data.val` of the EMA weights when an
    EMA is given, else of the model; adds `val_map50` and `val_map50_95` to the epoch's record."""

    def __init__(self, data: Any, *, ema: ModelEMA | None = None, every: int = 1, limit: int | None = None,
                 postprocess: PostprocessConfig | None = None, batch_size: int = 16) -> None:
        self.data, self.ema, self.every, self.limit = data, ema, every, limit
        self.postprocess = postprocess
        self.batch_size = batch_size

    def on_epoch_end(self, state: Any) -> None:
        from deepshrink.detection.evaluation import evaluate_detector

        epoch = state.epoch + 1
        if state.rank != 0 or not len(self.data.val) or (epoch % self.every and epoch != state.config.epochs):
            return
        model = self.ema.averaged(state.model) if self.ema is not None else state.model
        result = evaluate_detector(model, self.data, split="val", batch_size=self.batch_size, limit=self.limit,
                                   postprocess_config=self.postprocess)
        state.history[-1].update(val_map50=round(result.map50, 3), val_map50_95=round(result.map50_95, 3))
