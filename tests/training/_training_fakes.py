"""Tiny learnable data and models for the engine tests, and a stand-in for `deepshrink.data`.

The engine imports `deepshrink.data.BatchLoader` lazily; when the real data layer is importable it
is used, otherwise `install()` puts a minimal implementation of the DEVELOPERS.md contract in its
place (same (seed, epoch) shuffling and round-robin rank sharding)."""

from __future__ import annotations

import importlib
import math
import sys
import types
from dataclasses import dataclass

import torch
import torch.nn as nn


@dataclass(frozen=True)
class FakeImageSet:
    images: torch.Tensor  # uint8 [N, C, H, W]
    labels: torch.Tensor  # int64 [N]

    def __len__(self) -> int:
        return int(self.labels.shape[0])


@dataclass(frozen=True)
class FakeDataBundle:
    train: FakeImageSet
    val: FakeImageSet
    test: FakeImageSet
    classes: tuple[str, ...]
    num_classes: int
    input_size: tuple[int, int, int]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    name: str


class FakeBatchLoader:
    """The BatchLoader contract on in-memory tensors: shuffle from (seed, epoch), flip-only
    augmentation from (seed, epoch, rank, batch), round-robin sharding across ranks."""

    def __init__(self, imageset, batch_size, *, train, augment, mean, std, seed=0, rank=0, world_size=1,
                 limit_batches=None, drop_last=None, channels_last=False, device="cpu"):
        self.imageset, self.batch_size, self.train, self.augment = imageset, batch_size, train, augment
        self.seed, self.rank, self.world_size, self.limit_batches = seed, rank, world_size, limit_batches
        self.drop_last = train if drop_last is None else drop_last
        self.channels_last, self.device = channels_last, torch.device(device)
        self.mean = torch.tensor(mean).view(1, -1, 1, 1)
        self.std = torch.tensor(std).view(1, -1, 1, 1)
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def _per_rank(self) -> int:
        n = len(self.imageset)
        return n // self.world_size if self.drop_last else math.ceil(n / self.world_size)

    def __len__(self) -> int:
        per_rank = self._per_rank()
        count = per_rank // self.batch_size if self.drop_last else math.ceil(per_rank / self.batch_size)
        return count if self.limit_batches is None else min(count, self.limit_batches)

    def __iter__(self):
        n = len(self.imageset)
        gen = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
        order = torch.randperm(n, generator=gen) if self.train else torch.arange(n)
        total = self._per_rank() * self.world_size
        order = torch.cat([order, order[: max(0, total - n)]])[:total][self.rank :: self.world_size]
        for b in range(len(self)):
            idx = order[b * self.batch_size : (b + 1) * self.batch_size]
            images = self.imageset.images[idx].float() / 255.0
            if self.augment:
                flip_gen = torch.Generator().manual_seed(hash((self.seed, self.epoch, self.rank, b)) % 2**62)
                flip = torch.rand(len(idx), generator=flip_gen) < 0.5
                images = torch.where(flip.view(-1, 1, 1, 1), images.flip(-1), images)
            images = (images - self.mean) / self.std
            if self.channels_last:
                images = images.contiguous(memory_format=torch.channels_last)
            yield images.to(self.device), self.imageset.labels[idx].to(self.device)


def install() -> bool:
    """Make `deepshrink.data.BatchLoader` importable; True when the real data layer is used."""
    try:
        from deepshrink.data import BatchLoader  # noqa: F401

        return True
    except ImportError:
        pass
    try:
        module = importlib.import_module("deepshrink.data")
    except ImportError:
        module = types.ModuleType("deepshrink.data")
        sys.modules["deepshrink.data"] = module
    module.BatchLoader = FakeBatchLoader
    return False


def _set_classes():
    """The real ImageSet/DataBundle when the data layer exists, the fakes otherwise."""
    try:
        from deepshrink.data import DataBundle, ImageSet

        return ImageSet, DataBundle
    except ImportError:
        return FakeImageSet, FakeDataBundle


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
    install()
    image_set, bundle = _set_classes()
    gen = torch.Generator().manual_seed(seed)
    train, val, test = (image_set(*_split(n, num_classes, size, gen)) for n in (n_train, n_val, n_val))
    return bundle(train=train, val=val, test=test, classes=tuple(str(k) for k in range(num_classes)),
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
