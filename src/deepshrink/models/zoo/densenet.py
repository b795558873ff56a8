"""DenseNet-BC for CIFAR (Huang et al. 2017): a 3×3 stem with 2k channels, three dense blocks of
(depth - 4) / 6 bottleneck layers (BN-ReLU-conv1×1 to 4k, BN-ReLU-conv3×3 to k, concatenated onto the
input), transitions (BN-ReLU-conv1×1 compressing by θ, 2×2 average pool) between blocks, then
BN-ReLU, global pooling and a linear. DenseNet-BC-100 with k = 12, θ = 0.5 has 769,162 parameters at
10 classes, the count of the paper's 0.8M model in its usual implementation (bamos/densenet.pytorch)."""

from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from deepshrink.errors import ConfigError
from deepshrink.models.registry import CIFAR_MEAN, CIFAR_STD, MODELS
from deepshrink.models.zoo.layers import init_weights, require_float, require_int


class Bottleneck(nn.Module):
    def __init__(self, in_channels: int, growth_rate: int) -> None:
        super().__init__()
        inner = 4 * growth_rate
        self.bn1 = nn.BatchNorm2d(in_channels)
        self.conv1 = nn.Conv2d(in_channels, inner, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(inner)
        self.conv2 = nn.Conv2d(inner, growth_rate, 3, padding=1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv1(F.relu(self.bn1(x)))
        out = self.conv2(F.relu(self.bn2(out)))
        return torch.cat([x, out], 1)


class Transition(nn.Module):
    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.bn = nn.BatchNorm2d(in_channels)
        self.conv = nn.Conv2d(in_channels, out_channels, 1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.avg_pool2d(self.conv(F.relu(self.bn(x))), 2)


class DenseNetBC(nn.Module):
    def __init__(
        self, depth: int = 100, growth_rate: int = 12, compression: float = 0.5, num_classes: int = 10
    ) -> None:
        super().__init__()
        if isinstance(depth, bool) or not isinstance(depth, int) or depth < 10 or (depth - 4) % 6:
            raise ConfigError(f"DenseNet-BC: depth must be 6n + 4 with n >= 1 (40, 100, 190, ...), got {depth!r}")
        layers_per_block = (depth - 4) // 6
        channels = 2 * growth_rate
        self.conv1 = nn.Conv2d(3, channels, 3, padding=1, bias=False)
        for index in range(3):
            block = []
            for _ in range(layers_per_block):
                block.append(Bottleneck(channels, growth_rate))
                channels += growth_rate
            self.add_module(f"dense{index + 1}", nn.Sequential(*block))
            if index < 2:
                compressed = math.floor(channels * compression)
                self.add_module(f"trans{index + 1}", Transition(channels, compressed))
                channels = compressed
        self.bn = nn.BatchNorm2d(channels)
        self.linear = nn.Linear(channels, num_classes)
        init_weights(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv1(x)
        out = self.trans1(self.dense1(out))
        out = self.trans2(self.dense2(out))
        out = F.relu(self.bn(self.dense3(out)))
        out = F.adaptive_avg_pool2d(out, 1).flatten(1)
        return self.linear(out)


@MODELS.register(
    "densenet_bc_100",
    input_size=(3, 32, 32),
    mean=CIFAR_MEAN,
    std=CIFAR_STD,
    num_classes=10,
    params=769_162,
    family="densenet",
    description="DenseNet-BC-100 for CIFAR (Huang et al. 2017, k=12, compression 0.5, bottleneck)",
)
def densenet_bc_100(num_classes: int = 10, *, growth_rate: int = 12, compression: float = 0.5) -> DenseNetBC:
    return DenseNetBC(
        100,
        require_int("densenet_bc_100", "growth_rate", growth_rate, 1),
        require_float("densenet_bc_100", "compression", compression, lambda v: 0 < v <= 1, "in (0, 1]"),
        require_int("densenet_bc_100", "num_classes", num_classes, 1),
    )
