"""GhostNet (Han et al. 2020): MobileNetV3-like stages of Ghost bottlenecks. A Ghost module makes
half of its output channels with an ordinary conv (the primary conv) and the other half from them with
cheap 3×3 depthwise convs; a bottleneck is Ghost module → (3×3/5×5 depthwise, stride 2 only) →
squeeze-excite (some blocks) → Ghost module, plus a shortcut. Then a 1×1 conv to 960, global pooling,
a 1×1 conv head to 1280 with bias and ReLU, dropout and a linear. Parameter names follow the
authors' `ghostnet.py` (also timm's `ghostnet_100`) so their checkpoints load with `load_weights`.

`ghostnet_imagenet` is the published network: 5,182,508 parameters at width 1.0 and 1000 classes,
checked against the authors' code (same state-dict names and shapes; timm's `ghostnet_100` has the
same structure); the paper rounds it to 5.2M. Squeeze-excite sits after the depthwise conv (or the
first Ghost module at stride 1), reduces to make_divisible(C/4, 4) and gates with a hard sigmoid.
`ghostnet` is the CIFAR variant: like the zoo's MobileNetV2, the stem and the first 24-channel block
use stride 1, so a 32×32 input ends at 4×4. A stride-1 bottleneck has no depthwise conv, so that
block loses one (432 weights + BatchNorm): 3,913,790 parameters at 10 classes. Widths are
`width_mult` × the published ones rounded to multiples of 4, as in the reference code."""

from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from deepshrink.models.registry import CIFAR_MEAN, CIFAR_STD, MODELS
from deepshrink.models.zoo.layers import init_weights, require_float, require_int
from deepshrink.models.zoo.mobilenet_v2 import make_divisible

# Stages of (depthwise kernel, expanded width, output width, squeeze-excite ratio, stride), Table 1.
STAGES = (
    ((3, 16, 16, 0.0, 1),),
    ((3, 48, 24, 0.0, 2),),
    ((3, 72, 24, 0.0, 1),),
    ((5, 72, 40, 0.25, 2),),
    ((5, 120, 40, 0.25, 1),),
    ((3, 240, 80, 0.0, 2),),
    ((3, 200, 80, 0.0, 1), (3, 184, 80, 0.0, 1), (3, 184, 80, 0.0, 1), (3, 480, 112, 0.25, 1), (3, 672, 112, 0.25, 1)),
    ((5, 672, 160, 0.25, 2),),
    ((5, 960, 160, 0.0, 1), (5, 960, 160, 0.25, 1), (5, 960, 160, 0.0, 1), (5, 960, 160, 0.25, 1)),
)
CIFAR_STRIDE_ONE = (1, 0)  # (stage, block) of the first 24-channel block, kept at stride 1 for 32×32 input


def _conv_bn(in_channels: int, out_channels: int, kernel: int, stride: int = 1, groups: int = 1) -> list[nn.Module]:
    conv = nn.Conv2d(in_channels, out_channels, kernel, stride, kernel // 2, groups=groups, bias=False)
    return [conv, nn.BatchNorm2d(out_channels)]


class GhostModule(nn.Module):
    """ceil(out/ratio) channels from a 1×1 conv, the rest from 3×3 depthwise convs on those."""

    def __init__(self, in_channels: int, out_channels: int, *, relu: bool, ratio: int = 2) -> None:
        super().__init__()
        init = math.ceil(out_channels / ratio)
        act = [nn.ReLU()] if relu else []
        self.out_channels = out_channels
        self.trim = init * ratio != out_channels  # plain bool: a slice only where channels overshoot
        self.primary_conv = nn.Sequential(*_conv_bn(in_channels, init, 1), *act)
        self.cheap_operation = nn.Sequential(*_conv_bn(init, init * (ratio - 1), 3, groups=init), *act)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        primary = self.primary_conv(x)
        out = torch.cat([primary, self.cheap_operation(primary)], dim=1)
        return out[:, : self.out_channels] if self.trim else out


class SqueezeExcite(nn.Module):
    def __init__(self, channels: int, ratio: float) -> None:
        super().__init__()
        reduced = make_divisible(channels * ratio, 4)
        self.conv_reduce = nn.Conv2d(channels, reduced, 1)
        self.act1 = nn.ReLU()
        self.conv_expand = nn.Conv2d(reduced, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gate = self.conv_expand(self.act1(self.conv_reduce(F.adaptive_avg_pool2d(x, 1))))
        return x * F.hardsigmoid(gate)


class GhostBottleneck(nn.Module):
    def __init__(self, in_channels: int, mid: int, out: int, kernel: int, stride: int, se_ratio: float) -> None:
        super().__init__()
        self.stride = stride
        self.ghost1 = GhostModule(in_channels, mid, relu=True)
        if stride > 1:
            self.conv_dw, self.bn_dw = _conv_bn(mid, mid, kernel, stride, groups=mid)
        self.se = SqueezeExcite(mid, se_ratio) if se_ratio > 0 else nn.Identity()
        self.ghost2 = GhostModule(mid, out, relu=False)
        if in_channels == out and stride == 1:
            self.shortcut = nn.Sequential()
        else:
            self.shortcut = nn.Sequential(
                *_conv_bn(in_channels, in_channels, kernel, stride, groups=in_channels), *_conv_bn(in_channels, out, 1)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.ghost1(x)
        if self.stride > 1:
            out = self.bn_dw(self.conv_dw(out))
        return self.ghost2(self.se(out)) + self.shortcut(x)


class ConvBnAct(nn.Module):
    """The reference code's 1×1 conv-BN-ReLU after the last stage (its names: conv, bn1, act1)."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.conv, self.bn1 = _conv_bn(in_channels, out_channels, 1)
        self.act1 = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act1(self.bn1(self.conv(x)))


class GhostNet(nn.Module):
    def __init__(
        self, num_classes: int = 1000, width_mult: float = 1.0, dropout: float = 0.2, *, cifar: bool = False
    ) -> None:
        super().__init__()
        channels = make_divisible(16 * width_mult, 4)
        self.conv_stem, self.bn1 = _conv_bn(3, channels, 3, 1 if cifar else 2)
        self.act1 = nn.ReLU()
        stages = []
        for s, stage in enumerate(STAGES):
            blocks = []
            for b, (kernel, expanded, width, se_ratio, stride) in enumerate(stage):
                out, mid = make_divisible(width * width_mult, 4), make_divisible(expanded * width_mult, 4)
                stride = 1 if cifar and (s, b) == CIFAR_STRIDE_ONE else stride
                blocks.append(GhostBottleneck(channels, mid, out, kernel, stride, se_ratio))
                channels = out
            stages.append(nn.Sequential(*blocks))
        last = make_divisible(STAGES[-1][-1][1] * width_mult, 4)
        stages.append(nn.Sequential(ConvBnAct(channels, last)))
        self.blocks = nn.Sequential(*stages)
        self.conv_head = nn.Conv2d(last, 1280, 1)
        self.act2 = nn.ReLU()
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(1280, num_classes)
        init_weights(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.blocks(self.act1(self.bn1(self.conv_stem(x))))
        x = self.act2(self.conv_head(F.adaptive_avg_pool2d(x, 1))).flatten(1)
        return self.classifier(self.dropout(x))


def _build(name: str, num_classes: int, width_mult: float, dropout: float, cifar: bool) -> GhostNet:
    return GhostNet(
        require_int(name, "num_classes", num_classes, 1),
        require_float(name, "width_mult", width_mult, lambda v: 0 < v <= 4, "in (0, 4]"),
        require_float(name, "dropout", dropout, lambda v: 0 <= v < 1, "in [0, 1)"),
        cifar=cifar,
    )


@MODELS.register(
    "ghostnet",
    input_size=(3, 32, 32),
    mean=CIFAR_MEAN,
    std=CIFAR_STD,
    num_classes=10,
    params=3_913_790,
    family="ghostnet",
    description="GhostNet 1.0 (Han et al. 2020) with a CIFAR stem (stride-1 stem and first 24-channel block)",
)
def ghostnet(num_classes: int = 10, *, width_mult: float = 1.0, dropout: float = 0.2) -> GhostNet:
    return _build("ghostnet", num_classes, width_mult, dropout, cifar=True)


@MODELS.register(
    "ghostnet_imagenet",
    input_size=(3, 224, 224),
    mean=CIFAR_MEAN,  # the ImageNet statistics (see models/registry.py)
    std=CIFAR_STD,
    num_classes=1000,
    params=5_182_508,
    family="ghostnet",
    description="GhostNet 1.0 (Han et al. 2020) for 224x224 ImageNet, stride-2 stem as published",
)
def ghostnet_imagenet(num_classes: int = 1000, *, width_mult: float = 1.0, dropout: float = 0.2) -> GhostNet:
    return _build("ghostnet_imagenet", num_classes, width_mult, dropout, cifar=False)
