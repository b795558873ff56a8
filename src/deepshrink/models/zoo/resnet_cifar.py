"""ResNet-20/32/44/56/110 for CIFAR exactly as He et al. 2016 (§4.2): a 3×3 stem with 16 channels,
three stages of n basic blocks with 16/32/64 channels (depth = 6n + 2), option-A shortcuts
(strided subsampling + zero channel padding, parameter-free), global average pooling, one linear.

Parameter names follow the widely used CIFAR checkpoints (`../shared/weights/resnet-cifar10`):
conv1, bn1, layerS.B.{conv1,bn1,conv2,bn2}, linear — so `load_weights` needs no key mapping."""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from deepshrink.errors import ConfigError
from deepshrink.models.registry import CIFAR_MEAN, CIFAR_STD, MODELS
from deepshrink.models.zoo.layers import ChannelPadShortcut, init_weights, require_int

STAGE_WIDTHS = (16, 32, 64)


class BasicBlock(nn.Module):
    """conv3×3-BN-ReLU-conv3×3-BN, plus the shortcut, then ReLU."""

    def __init__(self, in_planes: int, planes: int, stride: int = 1, *, pooled_shortcut: bool = False) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        if stride != 1 or in_planes != planes:
            extra = planes - in_planes  # split as evenly as possible: 16 → 32 pads 8 before, 8 after
            self.shortcut = ChannelPadShortcut(stride, extra // 2, extra - extra // 2, pool=pooled_shortcut)
        else:
            self.shortcut = nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


class CifarResNet(nn.Module):
    """Any depth 6n + 2; `pooled_shortcuts=True` builds ncnn-friendly shortcuts (same outputs)."""

    def __init__(self, depth: int = 20, num_classes: int = 10, *, pooled_shortcuts: bool = False) -> None:
        super().__init__()
        if isinstance(depth, bool) or not isinstance(depth, int) or depth < 8 or (depth - 2) % 6:
            raise ConfigError(f"CIFAR ResNet: depth must be 6n + 2 with n >= 1 (20, 32, 44, 56, 110), got {depth!r}")
        require_int(f"resnet{depth}", "num_classes", num_classes, 1)
        blocks = (depth - 2) // 6
        self.conv1 = nn.Conv2d(3, STAGE_WIDTHS[0], 3, 1, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(STAGE_WIDTHS[0])
        in_planes = STAGE_WIDTHS[0]
        for index, planes in enumerate(STAGE_WIDTHS):
            stride = 1 if index == 0 else 2
            layer = []
            for block in range(blocks):
                block_stride = stride if block == 0 else 1  # only the first block of a stage downsamples
                layer.append(BasicBlock(in_planes, planes, block_stride, pooled_shortcut=pooled_shortcuts))
                in_planes = planes
            self.add_module(f"layer{index + 1}", nn.Sequential(*layer))
        self.linear = nn.Linear(in_planes, num_classes)
        init_weights(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.layer3(self.layer2(self.layer1(out)))
        out = F.adaptive_avg_pool2d(out, 1).flatten(1)  # = the paper's 8×8 average pool at 32×32 input
        return self.linear(out)


# Exact counts at 10 classes (He et al. round them to 0.27M / 0.46M / 0.66M / 0.85M / 1.7M). They equal
# the trainable tensors in ../shared/weights/resnet-cifar10/*.th; each extra block per stage adds 97,216.
_PUBLISHED = {20: 269_722, 32: 464_154, 44: 658_586, 56: 853_018, 110: 1_727_962}


def _register(depth: int, params: int) -> None:
    def factory(num_classes: int = 10, *, pooled_shortcuts: bool = False) -> CifarResNet:
        return CifarResNet(depth, num_classes, pooled_shortcuts=pooled_shortcuts)

    factory.__name__ = factory.__qualname__ = f"resnet{depth}"
    factory.__doc__ = f"ResNet-{depth} for CIFAR (He et al. 2016, option-A shortcuts)."
    MODELS.register(
        f"resnet{depth}",
        input_size=(3, 32, 32),
        mean=CIFAR_MEAN,
        std=CIFAR_STD,
        num_classes=10,
        params=params,
        family="resnet_cifar",
        description=f"ResNet-{depth} for CIFAR, He et al. 2016, option-A zero-padding shortcuts",
    )(factory)


for _depth, _params in _PUBLISHED.items():
    _register(_depth, _params)
