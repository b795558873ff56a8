"""MobileNetV1 (Howard et al. 2017): a 3×3 stem, then 13 depthwise-separable blocks (3×3 depthwise
conv-BN-ReLU, 1×1 pointwise conv-BN-ReLU), global pooling and a linear classifier.

`mobilenet_v1_imagenet` is the published network (stride-2 stem, 224×224 input): 4,231,976
parameters at width 1.0 and 1000 classes, the paper's 4.2M. `mobilenet_v1` is the CIFAR variant:
like the zoo's MobileNetV2 it keeps the stem and the first 128-channel block at stride 1, so a
32×32 input reaches the last blocks at 4×4. Strides do not change parameters: 3,217,226 at
10 classes. Widths are `width_mult` × the published ones rounded to multiples of 8 (the published
multipliers 0.25, 0.5, 0.75 give exactly the paper's channel counts).

CIFAR_MEAN/STD are the ImageNet statistics (see models/registry.py), so both variants use them."""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from deepshrink.models.registry import CIFAR_MEAN, CIFAR_STD, MODELS
from deepshrink.models.zoo.layers import ConvBNAct, init_weights, require_float, require_int
from deepshrink.models.zoo.mobilenet_v2 import make_divisible

# (output channels, stride) of the 13 depthwise-separable blocks, as in Table 1 of the paper.
BLOCKS = ((64, 1), (128, 2), (128, 1), (256, 2), (256, 1), (512, 2), *((512, 1),) * 5, (1024, 2), (1024, 1))


class DepthwiseSeparable(nn.Module):
    def __init__(self, in_channels: int, out_channels: int, stride: int) -> None:
        super().__init__()
        self.depthwise = ConvBNAct(in_channels, in_channels, 3, stride, groups=in_channels)
        self.pointwise = ConvBNAct(in_channels, out_channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pointwise(self.depthwise(x))


class MobileNetV1(nn.Module):
    def __init__(self, num_classes: int = 1000, width_mult: float = 1.0, *, cifar: bool = False) -> None:
        super().__init__()
        channels = make_divisible(32 * width_mult)
        self.stem = ConvBNAct(3, channels, 3, 1 if cifar else 2)
        blocks = []
        for index, (width, stride) in enumerate(BLOCKS):
            out = make_divisible(width * width_mult)
            blocks.append(DepthwiseSeparable(channels, out, 1 if cifar and index == 1 else stride))
            channels = out
        self.blocks = nn.Sequential(*blocks)
        self.classifier = nn.Linear(channels, num_classes)
        init_weights(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.blocks(self.stem(x))
        return self.classifier(F.adaptive_avg_pool2d(x, 1).flatten(1))


def _build(name: str, num_classes: int, width_mult: float, cifar: bool) -> MobileNetV1:
    return MobileNetV1(
        require_int(name, "num_classes", num_classes, 1),
        require_float(name, "width_mult", width_mult, lambda v: 0 < v <= 4, "in (0, 4]"),
        cifar=cifar,
    )


@MODELS.register(
    "mobilenet_v1",
    input_size=(3, 32, 32),
    mean=CIFAR_MEAN,
    std=CIFAR_STD,
    num_classes=10,
    params=3_217_226,
    family="mobilenet",
    description="MobileNetV1 (Howard et al. 2017) with a CIFAR stem (stride-1 stem and first 128-channel block)",
)
def mobilenet_v1(num_classes: int = 10, *, width_mult: float = 1.0) -> MobileNetV1:
    return _build("mobilenet_v1", num_classes, width_mult, cifar=True)


@MODELS.register(
    "mobilenet_v1_imagenet",
    input_size=(3, 224, 224),
    mean=CIFAR_MEAN,
    std=CIFAR_STD,
    num_classes=1000,
    params=4_231_976,
    family="mobilenet",
    description="MobileNetV1 (Howard et al. 2017) for 224x224 ImageNet, stride-2 stem as published",
)
def mobilenet_v1_imagenet(num_classes: int = 1000, *, width_mult: float = 1.0) -> MobileNetV1:
    return _build("mobilenet_v1_imagenet", num_classes, width_mult, cifar=False)
