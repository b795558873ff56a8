"""Tiny models shared by the metrics tests."""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn

from deepshrink.models import ModelSpec, attach_spec


class Block(nn.Module):
    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(channels)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv2(torch.relu(self.bn1(self.conv1(x))))


class TinyNet(nn.Module):
    """stem conv 3->4 on 8x8, two residual blocks in a Sequential, a matmul in forward, a linear."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 4, 3, padding=1)
        self.layer1 = nn.Sequential(Block(4), Block(4))
        self.mix = nn.Parameter(torch.randn(4, 4))
        self.fc = nn.Linear(4, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.layer1(self.stem(x)).mean(dim=(2, 3))
        return self.fc(x @ self.mix)


@pytest.fixture
def tiny() -> TinyNet:
    return attach_spec(TinyNet(), ModelSpec(arch="tiny", num_classes=5, input_size=(3, 8, 8)))
