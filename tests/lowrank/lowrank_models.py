"""Test-only models for the low-rank tests: a tiny CNN covering stride, bias, a non-square kernel,
a grouped conv (never decomposed automatically) and a classifier; importable as
`lowrank_models:tiny_cnn` so `deepshrink.load` can rebuild it from its spec."""

from __future__ import annotations

import torch
import torch.nn as nn


class TinyCNN(nn.Module):
    def __init__(self, num_classes: int = 10) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(8)
        self.body = nn.Sequential(
            nn.Conv2d(8, 16, 3, stride=2, padding=1),
            nn.ReLU(),
            nn.Conv2d(16, 16, (3, 5), padding=(1, 2), bias=False),
            nn.ReLU(),
            nn.Conv2d(16, 16, 3, padding=1, groups=4),
            nn.ReLU(),
            nn.Conv2d(16, 24, 3, padding=2, dilation=2),
            nn.ReLU(),
        )
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.hidden = nn.Linear(24, 32)
        self.fc = nn.Linear(32, num_classes)

    def forward(self, x):
        x = self.body(self.bn(self.stem(x)).relu())
        return self.fc(self.hidden(self.pool(x).flatten(1)).relu())


def tiny_cnn(num_classes: int = 10) -> nn.Module:
    return TinyCNN(num_classes)


def relative_error(got: torch.Tensor, want: torch.Tensor) -> float:
    return float((got - want).norm() / want.norm())
