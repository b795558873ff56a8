"""Quantisation-aware training on the shared training engine: the fake-quant model (STE, LSQ,
PACT, DoReFa, BWN/XNOR, TWN quantisers) is fine-tuned with `deepshrink.training.train`; the
learnable step sizes and clipping levels are ordinary parameters of the model, so the engine's
optimiser trains them."""

from __future__ import annotations

import copy
import os
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F

from deepshrink.distillation.objective import ready_teacher
from deepshrink.errors import ConfigError
from deepshrink.fileio import read_json, write_json
from deepshrink.quantization.bn_qat import attach_batchnorm, freeze_batchnorm, reestimate_statistics
from deepshrink.quantization.calibrate import is_bundle
from deepshrink.quantization.config import QAT_DEFAULTS, QuantizeConfig

QUANTIZE_CONFIG_FILE = "quantize_config.json"  # beside the QAT checkpoints in train_dir


class DistillObjective(nn.Module):
    """Cross-entropy plus `weight` * KL(teacher || student) on the logits: the float model
    guides the low-bit one (Mishra & Marr 2018, Apprentice)."""

    def __init__(self, teacher: nn.Module, weight: float, temperature: float = 1.0) -> None:
        super().__init__()
        self.teacher = [teacher.eval()]  # a list: keep the teacher's weights out of the optimiser
        self.weight, self.temperature = weight, temperature

    def forward(self, model: nn.Module, images: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        logits = model(images)
        with torch.no_grad():
            target = ready_teacher(self.teacher[0], images.device)(images)
        t = self.temperature
        kl = F.kl_div(F.log_softmax(logits / t, 1), F.log_softmax(target / t, 1), log_target=True, reduction="batchmean")
        return F.cross_entropy(logits, labels) + self.weight * t * t * kl, logits


def run_qat(model: nn.Module, data: Any, config: QuantizeConfig, teacher: nn.Module | None = None, *,
            folded: list[str] = (), batches: list[torch.Tensor] = (), train_dir: str | os.PathLike | None = None,
            resume: bool = False) -> tuple[nn.Module, list[dict]]:
    """Fine-tune the calibrated fake-quant `model` on `data` (a DataBundle). With
    advanced.qat_batchnorm, the `folded` layers train with a BatchNorm started from their output
    statistics on `batches` and are folded again afterwards (see bn_qat). With `train_dir` the
    training checkpoints every epoch there and `resume` continues from the last one."""
    from deepshrink.training import TrainConfig, train

    if not is_bundle(data):
        raise ConfigError(
            f"method 'qat' trains the quantised model, so its data must be a DataBundle "
            f"(deepshrink.load_data(spec)), got {type(data).__name__}"
        )
    train_config = config.train or TrainConfig(**QAT_DEFAULTS)
    if train_dir is not None:
        claim_train_dir(train_dir, config, resume)
    objective = None
    if teacher is not None and config.advanced.distill_weight > 0:
        objective = DistillObjective(teacher, config.advanced.distill_weight)
    guard = config.advanced.keep_calibrated and len(data.val) > 0
    if guard:  # fine-tuning must not leave the model worse than its post-training starting point
        calibrated = copy.deepcopy(model).eval()
        # limit_batches: a smoke run (a couple of batches) checks the guard without a full val pass
        right_before = _val_hits(calibrated, data, train_config.limit_batches)
    with_batchnorm = config.advanced.qat_batchnorm and bool(folded) and bool(batches) and train_config.epochs > 0
    if with_batchnorm:
        model = attach_batchnorm(copy.deepcopy(model), list(folded), list(batches))
    result = train(model, data, train_config, objective=objective, out_dir=train_dir, resume=resume)
    trained = result.model.cpu()  # trained wherever the engine chose; calibrated, exported and reported on CPU
    if objective is not None:
        teacher.cpu()
    if with_batchnorm:
        freeze_batchnorm(reestimate_statistics(trained, list(batches)))
    history = [dict(record) for record in result.history]
    if guard:
        right_after = _val_hits(trained.eval(), data, train_config.limit_batches)
        # Model selection on validation, the starting point included (early stopping's rule):
        # a short fine-tune that gets fewer validation images right than PTQ did is discarded.
        lost = int((right_before & ~right_after).sum())
        won = int((~right_before & right_after).sum())
        kept = lost > won
        if history:
            history[-1].update(val_top1_calibrated=100 * right_before.float().mean().item(),
                               val_top1_trained=100 * right_after.float().mean().item(),
                               val_images_lost=lost, val_images_won=won, kept_calibrated=kept)
        if kept:
            return calibrated, history
    return trained.eval(), history


def claim_train_dir(train_dir: str | os.PathLike, config: QuantizeConfig, resume: bool) -> None:
    """Keep the quantisation settings beside the QAT checkpoints. Resuming under other settings
    would load weights trained for another fake-quant model, so it is refused by field (the
    training engine checks the `train` fields itself). A field the saved file lacks was added to
    DeepShrink after those checkpoints were written; they were trained with its default."""
    path = Path(train_dir) / QUANTIZE_CONFIG_FILE
    current = _flat(config.model_dump(mode="json", exclude={"train"}))
    if resume and path.is_file():
        defaults = _flat(QuantizeConfig().model_dump(mode="json", exclude={"train"}))
        saved = defaults | _flat(read_json(path))
        for name in sorted(set(saved) | set(current)):
            if saved.get(name) != current.get(name):
                raise ConfigError(f"{name}: the QAT checkpoint in {train_dir} was trained with {name}={saved.get(name)!r}, "
                                  f"this run has {name}={current.get(name)!r}; use the same value or another directory")
    write_json(path, current)


def _flat(options: dict[str, Any]) -> dict[str, Any]:
    """One level of nesting flattened: {"advanced": {"equalize": x}} -> {"advanced.equalize": x}."""
    flat = {}
    for key, value in options.items():
        if isinstance(value, dict):
            flat.update({f"{key}.{inner}": v for inner, v in value.items()})
        else:
            flat[key] = value
    return flat


@torch.no_grad()
def _val_hits(model: nn.Module, data: Any, limit_batches: int | None) -> torch.Tensor:
    """Per-image correctness (bool) of `model` on the validation split, in a fixed order."""
    from deepshrink.data import BatchLoader

    loader = BatchLoader(data.val, 256, train=False, augment=False, mean=data.mean, std=data.std,
                         limit_batches=limit_batches)
    device = next(model.parameters()).device
    return torch.cat([model(images.to(device)).argmax(1).cpu() == labels for images, labels in loader])
