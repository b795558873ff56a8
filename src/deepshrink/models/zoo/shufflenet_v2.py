"""ShuffleNetV2 (Ma et al. 2018): a 3×3 stem and max-pool, three stages of units that split the
channels in two (chunk), transform one half (1×1, 3×3 depthwise, 1×1), concatenate and shuffle the
channels (reshape → transpose → reshape), then a 1×1 conv to 1024 channels, pooling and a linear.
Parameter names follow torchvision's `shufflenet_v2_x*` so its checkpoints load with `load_weights`.

`shufflenet_v2_imagenet` is the published network: 2,278,604 parameters at 1.0× and 1000 classes
(torchvision's count, the paper's 2.3M). `shufflenet_v2` is the CIFAR variant: stride-1 stem and
no max-pool, so a 32×32 input ends at 4×4; 1,263,854 parameters at 10 classes (only the classifier
differs). The published multipliers 0.5/1.0/1.5/2.0 use the paper's Table 5 widths (not a linear
scaling: they were tuned to FLOP targets); other multipliers scale the 1.0× widths, rounded to a
multiple of 4 so each stage splits evenly."""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from deepshrink.models.registry import CIFAR_MEAN, CIFAR_STD, MODELS
from deepshrink.models.zoo.layers import init_weights, require_float, require_int
from deepshrink.models.zoo.mobilenet_v2 import make_divisible

REPEATS = (4, 8, 4)
# width multiplier -> (stem, stage 2, stage 3, stage 4, head) channels, Table 5 of the paper.
PUBLISHED_WIDTHS = {
    0.5: (24, 48, 96, 192, 1024),
    1.0: (24, 116, 232, 464, 1024),
    1.5: (24, 176, 352, 704, 1024),
    2.0: (24, 244, 488, 976, 2048),
}


def stage_widths(width_mult: float) -> tuple[int, ...]:
    if width_mult in PUBLISHED_WIDTHS:
        return PUBLISHED_WIDTHS[width_mult]
    stages = tuple(make_divisible(c * width_mult, 4) for c in PUBLISHED_WIDTHS[1.0][1:4])
    return (24, *stages, 2048 if width_mult > 1.5 else 1024)


def channel_shuffle(x: torch.Tensor, groups: int) -> torch.Tensor:
    # Shapes are read per call (not unpacked) so torch.fx traces it and ONNX keeps the batch dynamic.
    n, h, w = x.shape[0], x.shape[2], x.shape[3]
    return x.reshape(n, groups, -1, h, w).transpose(1, 2).reshape(n, -1, h, w)


def _depthwise(channels: int, stride: int) -> nn.Conv2d:
    return nn.Conv2d(channels, channels, 3, stride, 1, groups=channels, bias=False)


class ShuffleUnit(nn.Module):
    """Stride 1: pass one half of the channels through, transform the other. Stride 2: both
    branches see the whole input and downsample, doubling the channels."""

    def __init__(self, in_channels: int, out_channels: int, stride: int) -> None:
        super().__init__()
        half = out_channels // 2
        self.stride = stride
        if stride > 1:
            self.branch1 = nn.Sequential(
                _depthwise(in_channels, stride), nn.BatchNorm2d(in_channels),
                nn.Conv2d(in_channels, half, 1, bias=False), nn.BatchNorm2d(half), nn.ReLU(),
            )  # fmt: skip
        self.branch2 = nn.Sequential(
            nn.Conv2d(in_channels if stride > 1 else half, half, 1, bias=False), nn.BatchNorm2d(half), nn.ReLU(),
            _depthwise(half, stride), nn.BatchNorm2d(half),
            nn.Conv2d(half, half, 1, bias=False), nn.BatchNorm2d(half), nn.ReLU(),
        )  # fmt: skip

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.stride == 1:
            parts = x.chunk(2, dim=1)
            out = torch.cat((parts[0], self.branch2(parts[1])), dim=1)
        else:
            out = torch.cat((self.branch1(x), self.branch2(x)), dim=1)
        return channel_shuffle(out, 2)


class ShuffleNetV2(nn.Module):
    def __init__(self, num_classes: int = 1000, width_mult: float = 1.0, *, cifar: bool = False) -> None:
        super().__init__()
        stem, *stages, head = stage_widths(width_mult)
        self.conv1 = nn.Sequential(
            nn.Conv2d(3, stem, 3, 1 if cifar else 2, 1, bias=False), nn.BatchNorm2d(stem), nn.ReLU()
        )
        self.maxpool = nn.Identity() if cifar else nn.MaxPool2d(3, 2, 1)
        channels = stem
        for index, (repeats, width) in enumerate(zip(REPEATS, stages)):
            units = [ShuffleUnit(channels, width, 2)] + [ShuffleUnit(width, width, 1) for _ in range(repeats - 1)]
            self.add_module(f"stage{index + 2}", nn.Sequential(*units))
            channels = width
        self.conv5 = nn.Sequential(
            nn.Conv2d(channels, head, 1, bias=False), nn.BatchNorm2d(head), nn.ReLU()
        )
        self.fc = nn.Linear(head, num_classes)
        init_weights(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.conv1(x))
        x = self.conv5(self.stage4(self.stage3(self.stage2(x))))
        return self.fc(F.adaptive_avg_pool2d(x, 1).flatten(1))


def _build(name: str, num_classes: int, width_mult: float, cifar: bool) -> ShuffleNetV2:
    return ShuffleNetV2(
        require_int(name, "num_classes", num_classes, 1),
        require_float(name, "width_mult", width_mult, lambda v: 0 < v <= 4, "in (0, 4]"),
        cifar=cifar,
    )


@MODELS.register(
    "shufflenet_v2",
    input_size=(3, 32, 32),
    mean=CIFAR_MEAN,
    std=CIFAR_STD,
    num_classes=10,
    params=1_263_854,
    family="shufflenet",
    description="ShuffleNetV2 (Ma et al. 2018) with a CIFAR stem (stride-1 conv, no max-pool)",
)
def shufflenet_v2(num_classes: int = 10, *, width_mult: float = 1.0) -> ShuffleNetV2:
    return _build("shufflenet_v2", num_classes, width_mult, cifar=True)


@MODELS.register(
    "shufflenet_v2_imagenet",
    input_size=(3, 224, 224),
    mean=CIFAR_MEAN,  # the ImageNet statistics (see models/registry.py)
    std=CIFAR_STD,
    num_classes=1000,
    params=2_278_604,
    family="shufflenet",
    description="ShuffleNetV2 (Ma et al. 2018) for 224x224 ImageNet, stride-2 stem and max-pool as published",
)
def shufflenet_v2_imagenet(num_classes: int = 1000, *, width_mult: float = 1.0) -> ShuffleNetV2:
    return _build("shufflenet_v2_imagenet", num_classes, width_mult, cifar=False)
