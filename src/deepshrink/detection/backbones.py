"""Backbones for the detectors, built from the zoo's own blocks and returning three feature maps
at strides 8, 16 and 32 (C3, C4, C5), with width and depth multipliers.

- `resnet`: the zoo's CIFAR `BasicBlock` (option-A shortcuts, so pruning already knows it) behind a
  stride-4 stem, in four stages of 32/64/128/256 channels: a ResNet-18 layout at half width when
  depth_mult = 1 (two blocks per stage). The CIFAR stem would run 16 channels at full 320x320
  resolution (4 GMACs); two stride-2 convolutions cut that to 80x80 first.
- `mobilenet_v2`: the zoo's `InvertedResidual` with the ImageNet strides (the zoo classifier keeps
  CIFAR strides for 32x32 inputs); taps after the 32-, 96- and 320-channel stages."""

from __future__ import annotations

import math
from collections.abc import Callable
from enum import Enum

import torch
import torch.nn as nn

from deepshrink.models.zoo.layers import ConvBNAct, init_weights
from deepshrink.models.zoo.mobilenet_v2 import InvertedResidual, make_divisible
from deepshrink.models.zoo.resnet_cifar import BasicBlock

RESNET_WIDTHS = (32, 64, 128, 256)
RESNET_BLOCKS = (2, 2, 2, 2)
# (expansion t, channels c, blocks n, first stride s): Sandler et al. 2018, Table 2 (ImageNet).
MOBILENET_V2_SETTINGS = (
    (1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1),
)
MOBILENET_V2_TAPS = (2, 4, 6)  # indices of the settings rows whose output is C3, C4, C5


class Backbone(str, Enum):
    RESNET = "resnet"
    MOBILENET_V2 = "mobilenet_v2"


def scaled_depth(blocks: int, depth_mult: float) -> int:
    return max(1, math.ceil(blocks * depth_mult))


class ResNetBackbone(nn.Module):
    def __init__(self, width_mult: float = 1.0, depth_mult: float = 1.0) -> None:
        super().__init__()
        widths = [make_divisible(w * width_mult) for w in RESNET_WIDTHS]
        self.stem = nn.Sequential(ConvBNAct(3, widths[0], 3, 2), ConvBNAct(widths[0], widths[0], 3, 2))
        in_planes = widths[0]
        for index, (planes, blocks) in enumerate(zip(widths, RESNET_BLOCKS)):
            stride = 1 if index == 0 else 2
            layer = []
            for block in range(scaled_depth(blocks, depth_mult)):
                layer.append(BasicBlock(in_planes, planes, stride if block == 0 else 1))
                in_planes = planes
            self.add_module(f"layer{index + 1}", nn.Sequential(*layer))
        self.channels = tuple(widths[1:])
        init_weights(self)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        c2 = self.layer1(self.stem(x))
        c3 = self.layer2(c2)
        c4 = self.layer3(c3)
        return c3, c4, self.layer4(c4)


class MobileNetV2Backbone(nn.Module):
    def __init__(self, width_mult: float = 1.0, depth_mult: float = 1.0) -> None:
        super().__init__()
        channels = make_divisible(32 * width_mult)
        self.stem = ConvBNAct(3, channels, 3, 2, act=nn.ReLU6)
        stages, taps = [], []
        for index, (expansion, width, repeats, stride) in enumerate(MOBILENET_V2_SETTINGS):
            out = make_divisible(width * width_mult)
            blocks = []
            for block in range(scaled_depth(repeats, depth_mult)):
                blocks.append(InvertedResidual(channels, out, stride if block == 0 else 1, expansion))
                channels = out
            stages.append(nn.Sequential(*blocks))
            if index in MOBILENET_V2_TAPS:
                taps.append(out)
        self.stages = nn.ModuleList(stages)
        self.channels = tuple(taps)
        init_weights(self)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        x = self.stem(x)
        features = []
        for index, stage in enumerate(self.stages):
            x = stage(x)
            if index in MOBILENET_V2_TAPS:
                features.append(x)
        return features[0], features[1], features[2]


BACKBONES: dict[Backbone, Callable[[float, float], nn.Module]] = {
    Backbone.RESNET: ResNetBackbone,
    Backbone.MOBILENET_V2: MobileNetV2Backbone,
}
