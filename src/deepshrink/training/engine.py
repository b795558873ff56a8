"""`train(model, data, config)`: the one training loop every family goes through.

The model is trained in place (moved to the run's device, and to channels_last when asked) and
returned in eval mode. The same call runs in one process or under `torchrun` (see distributed.py)."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn

from deepshrink.errors import ConfigError
from deepshrink.training import checkpoint as ckpt_io
from deepshrink.training import distributed
from deepshrink.training.callbacks import Callbacks, CrossEntropyObjective, TrainState
from deepshrink.training.config import TrainConfig
from deepshrink.training.determinism import seed_everything, set_rng_state
from deepshrink.training.loop import StepContext, autocast_for, evaluate, train_epoch
from deepshrink.training.optim import build_optimizer, build_scheduler
from deepshrink.training.progress import EpochProgress

log = logging.getLogger("deepshrink.training")

PROGRESS_EVERY = 10  # steps between progress-bar refreshes


@dataclass
class TrainResult:
    """The trained model (the object passed in, in eval mode) and one record per epoch:
    `epoch` (1-based), `step`, `lr` (at the epoch's first step), `train_loss`, `train_top1` (%),
    `images_per_s`, `seconds` (training part of the epoch) and, on evaluated epochs, `val_loss`
    (plain cross-entropy), `val_top1`, `val_top5` (%)."""

    model: nn.Module
    history: list[dict[str, Any]] = field(default_factory=list)

    @property
    def last(self) -> dict[str, Any]:
        return self.history[-1] if self.history else {}


def train(
    model: nn.Module,
    data: Any,
    config: TrainConfig | dict[str, Any] | None = None,
    *,
    objective: Any = None,
    callbacks: Iterable[Any] = (),
    out_dir: str | os.PathLike | None = None,
    resume: bool = False,
) -> TrainResult:
    """Train `model` on `data.train` (a DataBundle), validating on `data.val` when it is not empty.

    `objective(model, images, labels) -> (loss, logits)` defaults to cross-entropy with
    `config.label_smoothing`; an `nn.Module` objective's trainable parameters are optimised too.
    `callbacks`: see deepshrink.training.callbacks. With `out_dir`, a checkpoint is written after
    every epoch; `resume=True` continues from it (or starts afresh when there is none yet) and ends
    with the same weights as an uninterrupted run."""
    config = TrainConfig.coerce(config)
    if resume and out_dir is None:
        raise ConfigError("resume: needs out_dir (where checkpoint.pt is)")
    ctx = distributed.setup(config.device)
    threads = torch.get_num_threads()
    if config.num_threads:
        torch.set_num_threads(config.num_threads)
    finished = False
    try:
        result = _run(model, data, config, ctx, objective, Callbacks(callbacks), out_dir, resume)
        finished = True
        return result
    finally:
        torch.set_num_threads(threads)
        distributed.teardown(ctx, finished=finished)


def _run(
    model: nn.Module,
    data: Any,
    config: TrainConfig,
    ctx: distributed.DistContext,
    objective: Any,
    callbacks: Callbacks,
    out_dir: str | os.PathLike | None,
    resume: bool,
) -> TrainResult:
    local_batch = ctx.local_batch(config.batch_size)
    seed_everything(config.seed + ctx.rank)
    objective = CrossEntropyObjective(config.label_smoothing) if objective is None else objective
    memory_format = torch.channels_last if config.channels_last else torch.preserve_format
    model.to(ctx.device, memory_format=memory_format)
    if isinstance(objective, nn.Module):
        objective.to(ctx.device)
    modules = [model, objective] if isinstance(objective, nn.Module) else [model]

    train_loader = make_loader(data.train, local_batch, True, data, config, ctx)
    steps = len(train_loader)
    if steps == 0 and config.epochs > 0:
        raise ConfigError(
            f"batch_size: {config.batch_size} yields no full batch from {_count(data.train)} training images "
            f"on {ctx.world_size} process(es)"
        )
    optimizer = build_optimizer(modules, config)
    scheduler = build_scheduler(optimizer, config, steps)
    state = TrainState(model, optimizer, scheduler, config, objective, rank=ctx.rank, world_size=ctx.world_size)

    start_epoch, saved_rng = 0, None
    path = Path(out_dir) / ckpt_io.CHECKPOINT_FILE if out_dir is not None else None
    if resume and path.is_file():
        checkpoint = ckpt_io.load_checkpoint(path)
        ckpt_io.check_compatible(checkpoint, config, path)
        start_epoch = ckpt_io.restore(checkpoint, state, callbacks, path)
        saved_rng = checkpoint["rng"]
        log.info("resuming %s after epoch %d", path, start_epoch)
    if out_dir is not None and ctx.is_main:
        ckpt_io.write_run_config(out_dir, config, ctx.world_size)

    val_loader = make_loader(data.val, local_batch, False, data, config, ctx) if _count(data.val) else None
    autocast = autocast_for(ctx.device, config.amp)
    own_params = objective.parameters() if isinstance(objective, nn.Module) else ()
    run = StepContext(
        net=distributed.wrap(model, ctx),
        state=state,
        callbacks=callbacks,
        dist=ctx,
        clip_params=[p for group in optimizer.param_groups for p in group["params"]],
        objective_params=[p for p in own_params if p.requires_grad],
        autocast=autocast,
        memory_format=memory_format,
    )
    progress = EpochProgress(config.progress and ctx.is_main, config.epochs, PROGRESS_EVERY)
    if saved_rng is not None:
        set_rng_state(saved_rng)  # last, so nothing above perturbs it
    try:
        callbacks.fire("on_train_start", state)
        for epoch in range(start_epoch, config.epochs):
            state.epoch = epoch
            lr = optimizer.param_groups[0]["lr"]
            train_loader.set_epoch(epoch)
            model.train()
            callbacks.fire("on_epoch_start", state)
            record: dict[str, Any] = {"epoch": epoch + 1, "lr": lr}
            record.update(train_epoch(run, train_loader, steps, progress))
            if val_loader is not None and ((epoch + 1) % config.eval_every == 0 or epoch + 1 == config.epochs):
                val_loader.set_epoch(epoch)
                record.update(evaluate(model, val_loader, ctx, autocast, memory_format))
            record["step"] = state.step
            state.history.append(record)
            callbacks.fire("on_epoch_end", state)
            if out_dir is not None and ctx.is_main:
                ckpt_io.save_checkpoint(out_dir, state, callbacks, epoch + 1)
            progress.end_epoch(record)
        callbacks.fire("on_train_end", state)
    finally:
        progress.close()
    model.eval()
    return TrainResult(model, state.history)


def make_loader(
    imageset: Any, batch_size: int, train: bool, data: Any, config: TrainConfig, ctx: distributed.DistContext
) -> Any:
    """The data layer's BatchLoader for one split, sharded by rank (imported here: data is optional
    for users who only need configs and schedules)."""
    from deepshrink.data import BatchLoader

    return BatchLoader(
        imageset,
        batch_size,
        train=train,
        augment=train and config.augment,
        mean=data.mean,
        std=data.std,
        seed=config.seed,
        rank=ctx.rank,
        world_size=ctx.world_size,
        limit_batches=config.limit_batches,
        drop_last=train,
        channels_last=config.channels_last,
        device=ctx.device,
    )


def _count(imageset: Any) -> int:
    return 0 if imageset is None else int(imageset.labels.shape[0])
