"""Fixtures for the low-rank tests: a tiny CNN with a DeepShrink spec and example inputs."""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn

from deepshrink.data import DataBundle, ImageSet
from deepshrink.models import create_model

TINY = "lowrank_models:tiny_cnn"
TINY_SIZE = (3, 16, 16)


@pytest.fixture
def tiny() -> nn.Module:
    """TinyCNN with trained-looking statistics: BN running stats away from 0/1, eval mode."""
    torch.manual_seed(0)
    model = create_model(TINY, input_size=TINY_SIZE, mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25))
    with torch.no_grad():
        model.bn.running_mean.uniform_(-0.2, 0.2)
        model.bn.running_var.uniform_(0.5, 1.5)
    return model.eval()


@pytest.fixture
def images() -> torch.Tensor:
    return torch.randn(8, *TINY_SIZE, generator=torch.Generator().manual_seed(1))


def _images(n: int, classes: int, generator: torch.Generator) -> ImageSet:
    """Class k brightens channel k % 3 over noise: learnable in a few steps."""
    labels = torch.arange(n) % classes
    images = torch.randint(0, 80, (n, *TINY_SIZE), generator=generator).float()
    for k in range(classes):
        images[labels == k, k % 3] += 100 + 50 * (k // 3)
    return ImageSet(images.clamp(0, 255).to(torch.uint8), labels.to(torch.int64))


@pytest.fixture(scope="session")
def tiny_data() -> DataBundle:
    gen = torch.Generator().manual_seed(0)
    train, val, test = (_images(n, 4, gen) for n in (96, 32, 64))
    return DataBundle(train=train, val=val, test=test, classes=("a", "b", "c", "d"), num_classes=4,
                      input_size=TINY_SIZE, mean=(0.3, 0.3, 0.3), std=(0.25, 0.25, 0.25), name="tiny")
