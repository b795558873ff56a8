"""VGG-16 with BatchNorm, CIFAR variant (Simonyan & Zisserman 2015, configuration D): 13 conv3×3-BN-ReLU
layers in five stages with 2×2 max-pooling, then one 512 → num_classes linear (the 32×32 input is 1×1
after the fifth pool). This is the common CIFAR VGG-16-BN of kuangliu/pytorch-cifar, with the same
parameter names (`features.N`, `classifier`) and the same count: 14,728,266 at 10 classes.

Convolutions keep their bias as in that reference and torchvision's vgg16_bn, although the BatchNorm
after each makes it redundant (4,224 parameters)."""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from deepshrink.models.registry import CIFAR_MEAN, CIFAR_STD, MODELS
from deepshrink.models.zoo.layers import init_weights, require_int

POOL = "M"
VGG16 = (64, 64, POOL, 128, 128, POOL, 256, 256, 256, POOL, 512, 512, 512, POOL, 512, 512, 512, POOL)


class VGG(nn.Module):
    def __init__(self, cfg: tuple = VGG16, num_classes: int = 10, in_channels: int = 3) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        channels = in_channels
        for item in cfg:
            if item == POOL:
                layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
            else:
                layers += [nn.Conv2d(channels, item, 3, padding=1), nn.BatchNorm2d(item), nn.ReLU()]
                channels = item
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Linear(channels, num_classes)
        init_weights(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # Global pooling is the identity on the 1×1 map of a 32×32 input and keeps larger inputs valid.
        x = F.adaptive_avg_pool2d(self.features(x), 1).flatten(1)
        return self.classifier(x)


@MODELS.register(
    "vgg16_bn",
    input_size=(3, 32, 32),
    mean=CIFAR_MEAN,
    std=CIFAR_STD,
    num_classes=10,
    params=14_728_266,
    family="vgg",
    description="VGG-16-BN for CIFAR (13 conv-BN-ReLU, single 512→classes linear; kuangliu/pytorch-cifar layout)",
)
def vgg16_bn(num_classes: int = 10) -> VGG:
    return VGG(VGG16, require_int("vgg16_bn", "num_classes", num_classes, 1))
