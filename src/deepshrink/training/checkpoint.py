"""The run directory: `checkpoint.pt` (everything needed to continue exactly), `history.json` and
`train_config.json`. The checkpoint holds only tensors, numbers, strings and containers, is written
atomically after every epoch, and is read back with weights_only=True."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch.nn as nn

from deepshrink.errors import CheckpointError, ConfigError
from deepshrink.fileio import atomic_torch_save, safe_torch_load, write_json
from deepshrink.models.persist import load_state_dict_checked
from deepshrink.training.callbacks import Callbacks, TrainState
from deepshrink.training.config import TrainConfig
from deepshrink.training.determinism import rng_state

CHECKPOINT_FILE = "checkpoint.pt"
HISTORY_FILE = "history.json"
CONFIG_FILE = "train_config.json"
FORMAT = "deepshrink.train/1"
_KEYS = ("format", "epoch", "step", "model", "optimizer", "scheduler", "objective", "callbacks", "history",
         "rng", "config")


def save_checkpoint(out_dir: str | os.PathLike, state: TrainState, callbacks: Callbacks, completed_epochs: int) -> Path:
    """Write checkpoint.pt and history.json for a run that has finished `completed_epochs`."""
    out_dir = Path(out_dir)
    objective = state.objective
    payload = {
        "format": FORMAT,
        "epoch": completed_epochs,
        "step": state.step,
        "model": state.model.state_dict(),
        "optimizer": state.optimizer.state_dict(),
        "scheduler": state.scheduler.state_dict(),
        "objective": objective.state_dict() if isinstance(objective, nn.Module) else {},
        "callbacks": callbacks.state_dict(),
        "history": state.history,
        "rng": rng_state(),
        "config": state.config.model_dump(mode="json"),
    }
    path = atomic_torch_save(payload, out_dir / CHECKPOINT_FILE)
    write_json(out_dir / HISTORY_FILE, state.history)
    return path


def write_run_config(out_dir: str | os.PathLike, config: TrainConfig, world_size: int) -> Path:
    return write_json(Path(out_dir) / CONFIG_FILE, {**config.model_dump(mode="json"), "world_size": world_size})


def load_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    """Read a checkpoint written by `save_checkpoint` (CheckpointError if it is anything else)."""
    ckpt = safe_torch_load(path)
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not a deepshrink training checkpoint (expected format '{FORMAT}')")
    missing = [k for k in _KEYS if k not in ckpt]
    if missing:
        raise CheckpointError(f"{path}: training checkpoint lacks '{missing[0]}'")
    return ckpt


def check_compatible(ckpt: dict[str, Any], config: TrainConfig, path: str | os.PathLike) -> None:
    """ConfigError naming the first field that differs in a way that would change the run."""
    try:
        saved = TrainConfig(**ckpt["config"])
    except ConfigError as exc:
        raise CheckpointError(f"{path}: stored config is invalid ({exc})") from None
    for name in config.differing_fields(saved):
        raise ConfigError(
            f"{name}: the checkpoint {path} was written with {name}={getattr(saved, name)!r}, this run has "
            f"{name}={getattr(config, name)!r}; use the same value or start a new out_dir"
        )
    if ckpt["epoch"] > config.epochs:
        raise ConfigError(
            f"epochs: the checkpoint {path} has {ckpt['epoch']} completed epochs, this run asks for {config.epochs}"
        )


def restore(ckpt: dict[str, Any], state: TrainState, callbacks: Callbacks, path: str | os.PathLike) -> int:
    """Load model, optimiser, scheduler, objective and callback state; return completed epochs.
    RNG state is restored separately, just before the first resumed epoch."""
    source = str(path)
    load_state_dict_checked(state.model, ckpt["model"], source=source)
    if isinstance(state.objective, nn.Module):
        load_state_dict_checked(state.objective, ckpt["objective"], source=f"{source} (objective)")
    try:
        state.optimizer.load_state_dict(ckpt["optimizer"])
    except (ValueError, KeyError) as exc:
        raise CheckpointError(f"{source}: optimizer state does not fit this model and objective ({exc})") from None
    state.scheduler.load_state_dict(ckpt["scheduler"])
    _reapply_schedule(state)
    callbacks.load_state_dict(ckpt["callbacks"], source)
    state.step = int(ckpt["step"])
    state.history = list(ckpt["history"])
    return int(ckpt["epoch"])


def _reapply_schedule(state: TrainState) -> None:
    """Recompute the next step's lr from the current schedule: equal to the saved lr for the same
    config, and the new curve's value when `epochs` was extended."""
    scheduler = state.scheduler
    step = scheduler.last_epoch
    lrs = [base * fn(step) for base, fn in zip(scheduler.base_lrs, scheduler.lr_lambdas)]
    for group, lr in zip(state.optimizer.param_groups, lrs):
        group["lr"] = lr
    scheduler._last_lr = lrs  # what get_last_lr() reports
