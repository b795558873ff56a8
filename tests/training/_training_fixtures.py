"""Tiny learnable data and models for the engine tests (real `deepshrink.data` types)."""

from __future__ import annotations

import torch
import torch.nn as nn

from deepshrink.data import DataBundle, ImageSet


def _split(n: int, num_classes: int, size: int, generator: torch.Generator):
    """Class k lights channel k % 3 (brighter for k >= 3) over noise: learnable in a few steps."""
    labels = torch.arange(n) % num_classes
    labels = labels[torch.randperm(n, generator=generator)]
    images = torch.randint(0, 60, (n, 3, size, size), generator=generator).float()
    for k in range(num_classes):
        rows = labels == k
        images[rows, k % 3] += 120 + 60 * (k // 3)
    return images.clamp(0, 255).to(torch.uint8), labels.to(torch.int64)


def make_data(n_train: int = 64, n_val: int = 32, num_classes: int = 4, size: int = 8, seed: int = 0):
    """A DataBundle of synthetic 3 x size x size images."""
    gen = torch.Generator().manual_seed(seed)
    train, val, test = (ImageSet(*_split(n, num_classes, size, gen)) for n in (n_train, n_val, n_val))
    return DataBundle(train=train, val=val, test=test, classes=tuple(str(k) for k in range(num_classes)),
                      num_classes=num_classes, input_size=(3, size, size), mean=(0.25, 0.25, 0.25),
                      std=(0.25, 0.25, 0.25), name="synthetic")


def tiny_cnn(num_classes: int = 4, *, bn: bool = True, dropout: float = 0.0, seed: int = 0) -> nn.Module:
    """Conv (+BN) + ReLU + global pool + (dropout) + linear, initialised from `seed`."""
    torch.manual_seed(seed)
    layers: list[nn.Module] = [nn.Conv2d(3, 8, 3, padding=1, bias=not bn)]
    if bn:
        layers.append(nn.BatchNorm2d(8))
    layers += [nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Dropout(dropout), nn.Linear(8, num_classes)]
    return nn.Sequential(*layers)
