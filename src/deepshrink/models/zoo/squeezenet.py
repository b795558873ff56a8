"""SqueezeNet (Iandola et al. 2016): a stem conv, eight Fire modules (1×1 squeeze, then 1×1 and 3×3
expands concatenated) between max-pools, and a 1×1 conv classifier followed by ReLU and global
pooling. No BatchNorm; convolutions have biases. Parameter names follow torchvision's
`squeezenet1_0`/`squeezenet1_1`, so its checkpoints load with `load_weights`.

`squeezenet_imagenet` defaults to version 1.1 (the same accuracy at 2.4× fewer MACs): 1,235,496
parameters at 1000 classes; `version="1.0"` gives 1,248,424. Both are torchvision's counts.
`squeezenet` is the CIFAR variant: the stem becomes a 3×3 stride-1 conv with padding, so the three
max-pools take a 32×32 input to 4×4; 727,626 parameters for 1.1 at 10 classes (only the classifier
differs from ImageNet). `width_mult` scales every channel count, rounded to multiples of 8."""

from __future__ import annotations

import torch
import torch.nn as nn

from deepshrink.errors import ConfigError
from deepshrink.models.registry import CIFAR_MEAN, CIFAR_STD, MODELS
from deepshrink.models.zoo.layers import require_float, require_int
from deepshrink.models.zoo.mobilenet_v2 import make_divisible

POOL = "M"
F2, F3, F4, F5 = (16, 64), (32, 128), (48, 192), (64, 256)  # Fire (squeeze, expand) widths
# version -> (stem channels, stem kernel, the sequence of max-pools and Fire modules)
VERSIONS = {
    "1.0": (96, 7, (POOL, F2, F2, F3, POOL, F3, F4, F4, F5, POOL, F5)),
    "1.1": (64, 3, (POOL, F2, F2, POOL, F3, F3, POOL, F4, F4, F5, F5)),
}


class Fire(nn.Module):
    def __init__(self, in_channels: int, squeeze: int, expand: int) -> None:
        super().__init__()
        self.squeeze = nn.Conv2d(in_channels, squeeze, 1)
        self.squeeze_activation = nn.ReLU()
        self.expand1x1 = nn.Conv2d(squeeze, expand, 1)
        self.expand1x1_activation = nn.ReLU()
        self.expand3x3 = nn.Conv2d(squeeze, expand, 3, padding=1)
        self.expand3x3_activation = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.squeeze_activation(self.squeeze(x))
        one = self.expand1x1_activation(self.expand1x1(x))
        return torch.cat([one, self.expand3x3_activation(self.expand3x3(x))], 1)


class SqueezeNet(nn.Module):
    def __init__(
        self, num_classes: int = 1000, width_mult: float = 1.0, version: str = "1.1", *, cifar: bool = False
    ) -> None:
        super().__init__()
        stem, kernel, plan = VERSIONS[version]
        channels = make_divisible(stem * width_mult)
        # The CIFAR stem keeps 32×32: a 7×7 or unpadded stride-2 conv would discard most of the image.
        first = nn.Conv2d(3, channels, 3, 1, 1) if cifar else nn.Conv2d(3, channels, kernel, 2)
        layers: list[nn.Module] = [first, nn.ReLU()]
        for item in plan:
            if item == POOL:
                layers.append(nn.MaxPool2d(3, 2, ceil_mode=True))
            else:
                squeeze, expand = (make_divisible(c * width_mult) for c in item)
                layers.append(Fire(channels, squeeze, expand))
                channels = 2 * expand
        self.features = nn.Sequential(*layers)
        final_conv = nn.Conv2d(channels, num_classes, 1)
        self.classifier = nn.Sequential(nn.Dropout(0.5), final_conv, nn.ReLU(), nn.AdaptiveAvgPool2d(1))
        # torchvision's initialisation: without BatchNorm, fan-in scaling keeps activations O(1);
        # a small classifier keeps the ReLU'd logits near zero at the start.
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                if module is final_conv:
                    nn.init.normal_(module.weight, 0.0, 0.01)
                else:
                    nn.init.kaiming_uniform_(module.weight)
                nn.init.zeros_(module.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x)).flatten(1)


def _build(name: str, num_classes: int, width_mult: float, version: object, cifar: bool) -> SqueezeNet:
    if not isinstance(version, str) or version not in VERSIONS:
        raise ConfigError(f"model '{name}': version must be one of {', '.join(map(repr, VERSIONS))}, got {version!r}")
    return SqueezeNet(
        require_int(name, "num_classes", num_classes, 1),
        require_float(name, "width_mult", width_mult, lambda v: 0 < v <= 4, "in (0, 4]"),
        version,
        cifar=cifar,
    )


@MODELS.register(
    "squeezenet",
    input_size=(3, 32, 32),
    mean=CIFAR_MEAN,
    std=CIFAR_STD,
    num_classes=10,
    params=727_626,
    family="squeezenet",
    description="SqueezeNet 1.1 (Iandola et al. 2016) with a CIFAR stem (3x3 stride-1 conv)",
)
def squeezenet(num_classes: int = 10, *, width_mult: float = 1.0, version: str = "1.1") -> SqueezeNet:
    return _build("squeezenet", num_classes, width_mult, version, cifar=True)


@MODELS.register(
    "squeezenet_imagenet",
    input_size=(3, 224, 224),
    mean=CIFAR_MEAN,  # the ImageNet statistics (see models/registry.py)
    std=CIFAR_STD,
    num_classes=1000,
    params=1_235_496,
    family="squeezenet",
    description="SqueezeNet 1.1 (Iandola et al. 2016) for 224x224 ImageNet, stride-2 stem as published",
)
def squeezenet_imagenet(num_classes: int = 1000, *, width_mult: float = 1.0, version: str = "1.1") -> SqueezeNet:
    return _build("squeezenet_imagenet", num_classes, width_mult, version, cifar=False)
