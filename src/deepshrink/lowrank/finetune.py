"""Recovery after decomposition: fine-tune the decomposed model with knowledge distillation from
the original (Hinton KD, T = 4, 0.1 labels + 0.9 teacher), on the training engine through
`deepshrink.distillation.distill`. Kim et al. (2016) and Lebedev et al. (2015) fine-tune the whole
decomposed network; the original network's soft targets give a denser signal than labels alone."""

from __future__ import annotations

import os
from collections.abc import Iterable
from typing import Any

import torch.nn as nn

from deepshrink.distillation import DistillConfig, DistillResult, distill
from deepshrink.errors import ConfigError
from deepshrink.training import TrainConfig

# A fine-tuning recipe, not a training one: a tenth of the from-scratch learning rate (the factors
# start close to the original function), Nesterov SGD, cosine decay, the JPEG baselines' decay.
RECOVERY_TRAIN: dict[str, Any] = {
    "optimizer": "sgd",
    "lr": 0.01,
    "momentum": 0.9,
    "nesterov": True,
    "weight_decay": 1e-4,
    "schedule": "cosine",
    "batch_size": 128,
    "channels_last": True,
}
RECOVERY_KD: dict[str, Any] = {"losses": ["kd"], "temperature": 4.0, "weights": {"alpha": 0.1, "beta": 0.9}}


def recovery_config(epochs: int, **train_options: Any) -> DistillConfig:
    """The default fine-tuning recipe for `epochs`, with any TrainConfig field overridden."""
    return DistillConfig(**RECOVERY_KD, train=TrainConfig(**{**RECOVERY_TRAIN, "epochs": epochs, **train_options}))


def finetune(
    model: nn.Module,
    original: nn.Module,
    data: Any,
    config: DistillConfig | dict[str, Any] | None = None,
    *,
    epochs: int | None = None,
    callbacks: Iterable[Any] = (),
    out_dir: str | os.PathLike | None = None,
    resume: bool = False,
) -> DistillResult:
    """Train the decomposed `model` in place on `data` (a DataBundle or a spec string), distilling
    from `original` (frozen, eval mode). Give `epochs` for the default recipe or a full `config`."""
    if model is original:
        raise ConfigError("finetune: the teacher must be the original model, not the decomposed one itself")
    if config is None:
        config = recovery_config(5 if epochs is None else epochs)
    elif epochs is not None:
        raise ConfigError("finetune: give epochs= or config=, not both (config.train.epochs sets the length)")
    return distill(model, original, data, config, callbacks=callbacks, out_dir=out_dir, resume=resume)
