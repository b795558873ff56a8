"""A small CNN with the common layer types, shared by the export tests."""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn


class SmallCNN(nn.Module):
    def __init__(self, classes: int = 4) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.bn = nn.BatchNorm2d(8)
        self.fc = nn.Linear(8, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.bn(self.conv(x)))
        return self.fc(x.mean(dim=(2, 3)))


@pytest.fixture
def cnn() -> SmallCNN:
    model = SmallCNN()
    with torch.no_grad():  # non-trivial BN statistics so eval mode differs from train mode
        model.bn.running_mean.uniform_(-0.5, 0.5)
        model.bn.running_var.uniform_(0.5, 2.0)
    return model
