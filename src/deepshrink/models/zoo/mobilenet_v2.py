"""MobileNetV2 (Sandler et al. 2018) with a CIFAR stem: the same inverted-residual stages as the
ImageNet network, but the first convolution and the second stage (24 channels) use stride 1, so a
32×32 input reaches the last stage at 4×4 instead of 1×1. Strides do not change parameters: at width
1.0 and 10 classes the count is 2,236,682, the ImageNet model's 3,504,872 minus its 1000-way classifier.
Channel widths are rounded to multiples of 8 as in the reference implementation."""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from deepshrink.models.registry import CIFAR_MEAN, CIFAR_STD, MODELS
from deepshrink.models.zoo.layers import ConvBNAct, init_weights, require_float, require_int

# (expansion t, output channels c, blocks n, first stride s); the second row's stride is 2 on ImageNet.
CIFAR_SETTINGS = (
    (1, 16, 1, 1), (6, 24, 2, 1), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1),
)


def make_divisible(value: float, divisor: int = 8) -> int:
    """Round to the nearest multiple of `divisor` without going more than 10 % below `value`."""
    rounded = max(divisor, int(value + divisor / 2) // divisor * divisor)
    return rounded + divisor if rounded < 0.9 * value else rounded


class InvertedResidual(nn.Module):
    """1×1 expansion (absent when t = 1) → 3×3 depthwise → 1×1 linear projection, residual when shapes match."""

    def __init__(self, in_channels: int, out_channels: int, stride: int, expansion: int) -> None:
        super().__init__()
        hidden = int(round(in_channels * expansion))
        self.use_residual = stride == 1 and in_channels == out_channels
        self.expand = ConvBNAct(in_channels, hidden, 1, act=nn.ReLU6) if expansion != 1 else nn.Identity()
        self.depthwise = ConvBNAct(hidden, hidden, 3, stride, groups=hidden, act=nn.ReLU6)
        self.project = ConvBNAct(hidden, out_channels, 1, act=None)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.project(self.depthwise(self.expand(x)))
        return x + out if self.use_residual else out


class MobileNetV2(nn.Module):
    def __init__(self, num_classes: int = 10, width_mult: float = 1.0, dropout: float = 0.2) -> None:
        super().__init__()
        channels = make_divisible(32 * width_mult)
        last = make_divisible(1280 * max(1.0, width_mult))  # the head is never thinned below 1280
        self.stem = ConvBNAct(3, channels, 3, 1, act=nn.ReLU6)
        blocks = []
        for expansion, width, repeats, stride in CIFAR_SETTINGS:
            out = make_divisible(width * width_mult)
            for index in range(repeats):
                blocks.append(InvertedResidual(channels, out, stride if index == 0 else 1, expansion))
                channels = out
        self.blocks = nn.Sequential(*blocks)
        self.head = ConvBNAct(channels, last, 1, act=nn.ReLU6)
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(last, num_classes)
        init_weights(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.head(self.blocks(self.stem(x)))
        x = F.adaptive_avg_pool2d(x, 1).flatten(1)
        return self.classifier(self.dropout(x))


@MODELS.register(
    "mobilenet_v2",
    input_size=(3, 32, 32),
    mean=CIFAR_MEAN,
    std=CIFAR_STD,
    num_classes=10,
    params=2_236_682,
    family="mobilenet",
    description="MobileNetV2 (Sandler et al. 2018) with a CIFAR stem (stride-1 stem and 24-channel stage)",
)
def mobilenet_v2(num_classes: int = 10, *, width_mult: float = 1.0, dropout: float = 0.2) -> MobileNetV2:
    return MobileNetV2(
        require_int("mobilenet_v2", "num_classes", num_classes, 1),
        require_float("mobilenet_v2", "width_mult", width_mult, lambda v: 0 < v <= 4, "in (0, 4]"),
        require_float("mobilenet_v2", "dropout", dropout, lambda v: 0 <= v < 1, "in [0, 1)"),
    )
