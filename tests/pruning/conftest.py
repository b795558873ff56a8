"""Fixtures for the pruning tests: example inputs and a tiny learnable DataBundle."""

from __future__ import annotations

import pytest
import torch

from deepshrink.data import DataBundle, ImageSet


@pytest.fixture
def x32() -> torch.Tensor:
    return torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(1))


def _images(n: int, classes: int, size: int, generator: torch.Generator) -> ImageSet:
    """Class k brightens channel k % 3 (more for k >= 3) over noise: learnable in a few steps."""
    labels = torch.arange(n) % classes
    images = torch.randint(0, 60, (n, 3, size, size), generator=generator).float()
    for k in range(classes):
        images[labels == k, k % 3] += 120 + 60 * (k // 3)
    return ImageSet(images.clamp(0, 255).to(torch.uint8), labels.to(torch.int64))


@pytest.fixture(scope="session")
def tiny_data() -> DataBundle:
    gen = torch.Generator().manual_seed(0)
    train, val, test = (_images(n, 4, 16, gen) for n in (64, 32, 32))
    return DataBundle(train=train, val=val, test=test, classes=("a", "b", "c", "d"), num_classes=4,
                      input_size=(3, 16, 16), mean=(0.3, 0.3, 0.3), std=(0.25, 0.25, 0.25), name="tiny")

