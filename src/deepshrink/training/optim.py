"""Optimiser and per-step learning-rate schedule.

Weight decay: by default 1-D parameters (BatchNorm/LayerNorm scales and shifts, every bias) are not
decayed — decaying them only fights normalisation and hurts accuracy (the timm / nanoGPT default);
`decay_norm_and_bias=True` decays everything.

Schedules are plain functions `factor(step) -> float` multiplying the peak lr, wrapped in a
`LambdaLR` stepped once per optimiser step, so the scheduler state (its step counter) is saved and
restored with the checkpoint while the shape of the curve is rebuilt from the config."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable

import torch
import torch.nn as nn
from torch.optim.lr_scheduler import LambdaLR

from deepshrink.training.config import Optimizer, Schedule, TrainConfig

WARMUP_START = 0.01  # linear warm-up starts at lr / 100
ONECYCLE_PCT_START = 0.3  # torch OneCycleLR's defaults
ONECYCLE_DIV = 25.0
ONECYCLE_FINAL_DIV = 1e4

Factor = Callable[[int], float]


def param_groups(modules: Iterable[nn.Module], weight_decay: float, decay_norm_and_bias: bool) -> list[dict]:
    """Trainable parameters of `modules` (each counted once) split into decay / no-decay groups."""
    decay: list[nn.Parameter] = []
    no_decay: list[nn.Parameter] = []
    seen: set[int] = set()
    for module in modules:
        for param in module.parameters():
            if not param.requires_grad or id(param) in seen:
                continue
            seen.add(id(param))
            (decay if decay_norm_and_bias or param.ndim > 1 else no_decay).append(param)
    groups = [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    return [g for g in groups if g["params"]]


def _sgd(groups: list[dict], config: TrainConfig) -> torch.optim.Optimizer:
    return torch.optim.SGD(groups, lr=config.lr, momentum=config.momentum, nesterov=config.nesterov)


def _adamw(groups: list[dict], config: TrainConfig) -> torch.optim.Optimizer:
    return torch.optim.AdamW(groups, lr=config.lr, betas=(config.momentum, 0.999))


OPTIMIZERS: dict[Optimizer, Callable[[list[dict], TrainConfig], torch.optim.Optimizer]] = {
    Optimizer.SGD: _sgd,
    Optimizer.ADAMW: _adamw,
}


def build_optimizer(modules: Iterable[nn.Module], config: TrainConfig) -> torch.optim.Optimizer:
    groups = param_groups(modules, config.weight_decay, config.decay_norm_and_bias)
    return OPTIMIZERS[config.optimizer](groups, config)


# --- schedules: factor(step) for step = 0 .. total - 1 -------------------------------------------


def warmup(step: int, warmup_steps: int) -> float:
    """Linear ramp from WARMUP_START at step 0 to 1 at `warmup_steps`; 1 afterwards."""
    if step >= warmup_steps:
        return 1.0
    return WARMUP_START + (1.0 - WARMUP_START) * step / warmup_steps


def cosine(step: int, total: int, warmup_steps: int = 0) -> float:
    """Warm-up, then half a cosine from 1 down to 0 at `total`."""
    if step < warmup_steps:
        return warmup(step, warmup_steps)
    progress = (step - warmup_steps) / max(1, total - warmup_steps)
    return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))


def step_decay(step: int, milestones: tuple[int, ...], gamma: float, warmup_steps: int = 0) -> float:
    """Warm-up, then multiply by `gamma` at each milestone (in steps)."""
    passed = sum(1 for m in milestones if step >= m)
    return warmup(step, warmup_steps) * gamma**passed


def constant(step: int, warmup_steps: int = 0) -> float:
    return warmup(step, warmup_steps)


def one_cycle(step: int, total: int, pct_start: float = ONECYCLE_PCT_START) -> float:
    """torch's OneCycleLR curve (cosine annealing, two phases) as a factor of the peak lr:
    from 1/25 up to 1 over `pct_start` of the run, then down to 1/(25 * 1e4)."""
    start, peak, end = 1.0 / ONECYCLE_DIV, 1.0, 1.0 / (ONECYCLE_DIV * ONECYCLE_FINAL_DIV)
    rise_end = float(pct_start * total) - 1
    if step <= rise_end:
        return _cos_anneal(start, peak, step / rise_end if rise_end > 0 else 1.0)
    return _cos_anneal(peak, end, (step - rise_end) / max(1e-12, (total - 1) - rise_end))


def _cos_anneal(start: float, end: float, pct: float) -> float:
    return end + (start - end) / 2.0 * (math.cos(math.pi * pct) + 1)


def _cosine_factor(config: TrainConfig, steps_per_epoch: int) -> Factor:
    total, warm = _steps(config.epochs, steps_per_epoch), _steps(config.warmup_epochs, steps_per_epoch)
    return lambda step: cosine(step, total, warm)


def _step_factor(config: TrainConfig, steps_per_epoch: int) -> Factor:
    milestones = tuple(m * steps_per_epoch for m in config.step_milestones())
    warm = _steps(config.warmup_epochs, steps_per_epoch)
    return lambda step: step_decay(step, milestones, config.gamma, warm)


def _onecycle_factor(config: TrainConfig, steps_per_epoch: int) -> Factor:
    # warmup_epochs, when given, sets the rising phase; otherwise torch's 30 %.
    total = max(2, _steps(config.epochs, steps_per_epoch))
    pct = config.warmup_epochs / config.epochs if config.warmup_epochs and config.epochs else ONECYCLE_PCT_START
    pct = min(max(pct, 1.0 / total), 1.0 - 1.0 / total)
    return lambda step: one_cycle(step, total, pct)


def _constant_factor(config: TrainConfig, steps_per_epoch: int) -> Factor:
    warm = _steps(config.warmup_epochs, steps_per_epoch)
    return lambda step: constant(step, warm)


SCHEDULES: dict[Schedule, Callable[[TrainConfig, int], Factor]] = {
    Schedule.COSINE: _cosine_factor,
    Schedule.STEP: _step_factor,
    Schedule.ONECYCLE: _onecycle_factor,
    Schedule.CONSTANT: _constant_factor,
}


def _steps(epochs: float, steps_per_epoch: int) -> int:
    return int(round(epochs * steps_per_epoch))


def lr_factor(config: TrainConfig, steps_per_epoch: int) -> Factor:
    """The schedule of `config` as factor(step) of the peak lr."""
    return SCHEDULES[config.schedule](config, max(1, steps_per_epoch))


def build_scheduler(optimizer: torch.optim.Optimizer, config: TrainConfig, steps_per_epoch: int) -> LambdaLR:
    """A LambdaLR to be stepped after every optimiser step."""
    return LambdaLR(optimizer, lr_factor(config, steps_per_epoch))
