"""One training epoch and one evaluation pass.

Running sums stay on the device (no host sync per step); they are read once per epoch and, when
the progress bar is shown, once every few steps. Metrics are summed across DDP ranks."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, ContextManager

import torch
import torch.nn as nn
import torch.nn.functional as F

from deepshrink.training.callbacks import Callbacks, TrainState
from deepshrink.training.distributed import DistContext, all_reduce_sum, average_gradients
from deepshrink.training.progress import EpochProgress


@dataclass
class StepContext:
    net: nn.Module  # what the forward goes through: the DDP wrapper or the bare model
    state: TrainState
    callbacks: Callbacks
    dist: DistContext
    clip_params: list[nn.Parameter]  # every optimised parameter
    objective_params: list[nn.Parameter]  # trainable objective params, averaged by hand under DDP
    autocast: Callable[[], ContextManager[Any]]
    memory_format: torch.memory_format


def autocast_for(device: torch.device, amp: bool) -> Callable[[], ContextManager[Any]]:
    """bf16 autocast on CUDA when `amp`; a no-op context otherwise (CPU runs stay FP32)."""
    if amp and device.type == "cuda":
        return lambda: torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext


def train_epoch(run: StepContext, loader: Iterable, steps: int, progress: EpochProgress) -> dict[str, float]:
    """Train over `loader` once; return summed-over-ranks train loss, top-1 (%), images/s, seconds."""
    state, config, device = run.state, run.state.config, run.dist.device
    optimizer, scheduler, callbacks = state.optimizer, state.scheduler, run.callbacks
    loss_sum = torch.zeros((), dtype=torch.float64, device=device)
    correct = torch.zeros((), dtype=torch.int64, device=device)
    seen = 0
    progress.start_epoch(state.epoch, steps)
    start = time.perf_counter()
    for index, (images, labels) in enumerate(loader, 1):
        images = images.to(device, non_blocking=True, memory_format=run.memory_format)
        labels = labels.to(device, non_blocking=True)
        with run.autocast():
            loss, logits = state.objective(run.net, images, labels)
            if callbacks.has_extra_loss():
                extra = callbacks.extra_loss(state)
                loss = loss if extra is None else loss + extra
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        average_gradients(run.objective_params, run.dist)
        if config.grad_clip is not None:
            torch.nn.utils.clip_grad_norm_(run.clip_params, config.grad_clip)
        optimizer.step()
        scheduler.step()
        state.step += 1
        state.loss = loss.detach()
        seen += labels.shape[0]
        loss_sum += state.loss * labels.shape[0]
        if logits is not None:
            correct += (logits.detach().argmax(1) == labels).sum()
        callbacks.fire("on_step_end", state)
        if progress.due(index):
            elapsed = time.perf_counter() - start
            progress.update(index, loss_sum.item() / seen, seen * run.dist.world_size / elapsed)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    seconds = time.perf_counter() - start
    seen_total = torch.tensor(float(seen), dtype=torch.float64, device=device)
    totals = torch.stack([loss_sum, correct.to(torch.float64), seen_total])
    loss_total, correct_total, count = all_reduce_sum(totals, run.dist).tolist()
    count = max(count, 1.0)
    return {
        "train_loss": loss_total / count,
        "train_top1": 100.0 * correct_total / count,
        "images_per_s": count / max(seconds, 1e-9),
        "seconds": seconds,
    }


@torch.no_grad()
def evaluate(
    model: nn.Module,
    loader: Iterable,
    dist: DistContext,
    autocast: Callable[[], ContextManager[Any]],
    memory_format: torch.memory_format = torch.preserve_format,
) -> dict[str, float]:
    """Plain cross-entropy loss, top-1 and top-5 (%) of `model` (put in eval mode) over `loader`."""
    model.eval()
    device = dist.device
    sums = torch.zeros(4, dtype=torch.float64, device=device)  # loss, top-1 hits, top-5 hits, count
    for images, labels in loader:
        images = images.to(device, non_blocking=True, memory_format=memory_format)
        labels = labels.to(device, non_blocking=True)
        with autocast():
            logits = model(images)
        top = logits.topk(min(5, logits.shape[1]), dim=1).indices
        hits = top == labels[:, None]
        sums[0] += F.cross_entropy(logits.float(), labels, reduction="sum")
        sums[1] += hits[:, 0].sum()
        sums[2] += hits.any(dim=1).sum()
        sums[3] += labels.shape[0]
    loss, top1, top5, count = all_reduce_sum(sums, dist).tolist()
    count = max(count, 1.0)
    return {"val_loss": loss / count, "val_top1": 100.0 * top1 / count, "val_top5": 100.0 * top5 / count}
