"""The fast accuracy proxy. Pruning leaves BatchNorm running statistics describing the removed
channels' world, so a pruned net scores far below what it can reach; re-estimating them on a few
training batches (no gradient step) ranks candidates much like fine-tuned accuracy does (Li et
al., EagleEye 2020). Then top-1 and loss on a few fixed validation batches."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from deepshrink.data import BatchLoader
from deepshrink.nas.search.config import ProxyConfig

Batch = tuple[torch.Tensor, torch.Tensor]


def proxy_batches(data, proxy: ProxyConfig, seed: int) -> tuple[list[Batch], list[Batch]]:
    """Fixed calibration (training split) and validation batches, shuffled once by `seed` so a
    few batches cover every class even when a split is stored class by class."""

    def take(imageset, count: int) -> list[Batch]:
        loader = BatchLoader(imageset, proxy.batch_size, train=True, augment=False, mean=data.mean, std=data.std,
                             seed=seed, limit_batches=count, drop_last=False)
        return [(x, y) for x, y in loader]

    val = data.val if len(data.val.labels) else data.test  # a bundle without a validation split
    return take(data.train, proxy.calibration_batches), take(val, proxy.val_batches)


@torch.no_grad()
def recalibrate_bn(model: nn.Module, batches: Sequence[Batch]) -> nn.Module:
    """In place: BatchNorm running statistics become the exact average over `batches`."""
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if not norms:
        return model.eval()
    momenta = [m.momentum for m in norms]
    for norm in norms:
        norm.reset_running_stats()
        norm.momentum = None  # cumulative average rather than an exponential one
    model.train()
    for images, _ in batches:
        model(images)
    for norm, momentum in zip(norms, momenta):
        norm.momentum = momentum
    return model.eval()


@torch.no_grad()
def score(model: nn.Module, batches: Sequence[Batch]) -> tuple[float, float]:
    """(top-1 in percent, mean cross-entropy) over `batches`, in eval mode."""
    model.eval()
    correct, loss, count = 0, 0.0, 0
    for images, labels in batches:
        logits = model(images)
        correct += int((logits.argmax(1) == labels).sum())
        loss += float(F.cross_entropy(logits, labels, reduction="sum"))
        count += len(labels)
    return 100.0 * correct / max(count, 1), loss / max(count, 1)
