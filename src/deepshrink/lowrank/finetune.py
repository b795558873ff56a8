"""Recovery after decomposition: re-estimate the BatchNorm statistics, then fine-tune the decomposed
model with knowledge distillation from the original (Hinton KD, T = 4, 0.1 labels + 0.9 teacher)
on the training engine through `deepshrink.distillation.distill`. Kim et al. (2016) and Lebedev et
al. (2015) fine-tune the whole decomposed network; the original's soft targets give a denser signal
than labels alone.

Measured on ResNet-32 / CIFAR-10 JPEG (500 test images), CP at 5x: 22.8 % right after
decomposition, 67.4 % after BN re-estimation on 10 batches alone; 40 KD steps (warm-up 10) then
reach 70.0 % at lr 0.002 but fall to 19.6 % at lr 0.01 (CP factors are products of four matrices
and partly cancel, so large steps break them; Lebedev et al. also needed small rates). Even at
0.002, CP at 2x (high ranks, more cancelling terms) fell from 86.3 % to 72.5 % in 60 steps, and
to 54.9 % over 150; clipping the gradient norm at 1 gave 87.3 % in the same 60 steps (1,000 test
images). Hence the recovery defaults below.

Since the start is refit by least squares (`reconstruct_`) and the gradient norm is clipped at 5,
lr 0.005 trains every method stably and recovers faster (benchmarks/lowrank_resnet32.py, 10,000
test images): CP 5x after 1 epoch 85.53 % against 85.26 % at 0.002 and 84.69 % at 0.01; after 3
epochs 86.57 % against 86.31 %; CP 2x, Tucker and spatial at 2x and 5x all trained without a
collapse at 0.005 for 3 epochs. Hence lr 0.005."""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn

from deepshrink.data import sample_loader
from deepshrink.distillation import RECOVERY_KD, DistillConfig, DistillResult, distill
from deepshrink.errors import ConfigError
from deepshrink.lowrank.reconstruct import reconstruct_
from deepshrink.metrics.evaluation import resolve_data
from deepshrink.nas.search.proxy import recalibrate_bn
from deepshrink.training import CHECKPOINT_FILE, TrainConfig

# A fine-tuning recipe, not a training one: a small learning rate with a short warm-up (the
# factors start close to the original function), Nesterov SGD, cosine decay, the baselines' decay.
# The gradient-norm clip stops CP's rare blow-ups (CP 2x diverged without one) but must not slow
# the recovery: on ResNet-32, 150 batches, a clip at 1 cost Tucker 5x 10.5 points against 5.
RECOVERY_TRAIN: dict[str, Any] = {
    "optimizer": "sgd",
    "lr": 0.005,
    "warmup_epochs": 0.1,
    "momentum": 0.9,
    "nesterov": True,
    "weight_decay": 1e-4,
    "schedule": "cosine",
    "batch_size": 128,
    "channels_last": True,
    "grad_clip": 5.0,
}


def recovery_config(epochs: int, *, mimic: float = 0.0, **train_options: Any) -> DistillConfig:
    """The default fine-tuning recipe for `epochs`, with any TrainConfig field overridden; `mimic`
    > 0 adds stage-output feature mimicking (the `mimic` loss) at that weight beside KD."""
    if mimic < 0:
        raise ConfigError(f"mimic: the feature-mimicking weight must be >= 0 (0 turns it off), got {mimic}")
    losses = [*RECOVERY_KD["losses"], *([{"name": "mimic", "weight": mimic}] if mimic else [])]
    train = TrainConfig(**{**RECOVERY_TRAIN, "epochs": epochs, **train_options})
    return DistillConfig(**{**RECOVERY_KD, "losses": losses}, train=train)


def finetune(
    model: nn.Module,
    original: nn.Module,
    data: Any,
    config: DistillConfig | dict[str, Any] | None = None,
    *,
    epochs: int | None = None,
    reconstruct_images: int = 512,
    bn_batches: int | None = None,
    callbacks: Iterable[Any] = (),
    out_dir: str | os.PathLike | None = None,
    resume: bool = False,
) -> DistillResult:
    """Train the decomposed `model` in place on `data` (a DataBundle or a spec string), distilling
    from `original` (frozen, eval mode). Give `epochs` for the default recipe or a full `config`.

    First the start is repaired: each decomposed layer's last factor is refit to the original
    layer's outputs on `reconstruct_images` shuffled training images (`reconstruct_`), so the
    original BatchNorm statistics fit again; with `reconstruct_images=0` the BatchNorm statistics
    are re-estimated on `bn_batches` training batches instead (default 20 then, else 0).
    Measured on ResNet-32 / CIFAR-10 JPEG, CP at 5x: 20.7 % decomposed, 73.0 % after BN
    re-estimation, 81.2 % after reconstruction on 512 images (79.7 % with BN re-estimated after it)."""
    if model is original:
        raise ConfigError("finetune: the teacher must be the original model, not the decomposed one itself")
    if config is None:
        config = recovery_config(5 if epochs is None else epochs)
    elif epochs is not None:
        raise ConfigError("finetune: give epochs= or config=, not both (config.train.epochs sets the length)")
    config = DistillConfig.coerce(config)
    data = resolve_data(data)
    if reconstruct_images < 0:
        raise ConfigError(f"reconstruct_images must be >= 0 (0 to skip), got {reconstruct_images}")
    if bn_batches is None:
        bn_batches = 0 if reconstruct_images else 20
    resuming = resume and out_dir is not None and (Path(out_dir) / CHECKPOINT_FILE).is_file()
    if reconstruct_images and not resuming:  # a resumed run continues from refit, trained factors
        refit_on_data_(model, original, data, images=reconstruct_images, seed=config.train.seed)
    if bn_batches:
        recalibrate_bn_(model, data, batches=bn_batches, batch_size=config.train.batch_size, seed=config.train.seed)
    return distill(model, original, data, config, callbacks=callbacks, out_dir=out_dir, resume=resume)


def refit_on_data_(model: nn.Module, original: nn.Module, data: Any, *, images: int = 512,
                   seed: int = 0) -> dict[str, dict[str, float]]:
    """In place: `reconstruct_` on `images` shuffled, un-augmented training images of `data`;
    returns its per-layer errors."""
    bundle = resolve_data(data)
    device = next((p.device for p in model.parameters()), torch.device("cpu"))
    batch = next(iter(sample_loader(bundle, images, seed=seed, device=device)))[0]
    return reconstruct_(model, original.to(device), batch)


def recalibrate_bn_(model: nn.Module, data: Any, *, batches: int = 20, batch_size: int = 128, seed: int = 0) -> nn.Module:
    """In place: BatchNorm running statistics re-estimated on shuffled, un-augmented training
    batches (no gradient step). The decomposed layers change every activation's scale, so the
    original statistics no longer fit."""
    if batches < 1:
        raise ConfigError(f"bn_batches must be >= 1 (or 0 to skip), got {batches}")
    bundle = resolve_data(data)
    loader = sample_loader(bundle, batch_size, seed=seed, limit_batches=batches)
    device = next((p.device for p in model.parameters()), torch.device("cpu"))
    return recalibrate_bn(model, [(x.to(device), y) for x, y in loader])
