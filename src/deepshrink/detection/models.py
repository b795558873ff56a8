"""Single-stage anchor-free detectors (FCOS, Tian et al. 2019) in the model zoo.

`fcos_resnet` and `fcos_mobilenet_v2` share the PAN neck and the FCOS head; only the backbone
differs. The network's one output is the raw prediction tensor [B, A, 5 + C] (box distances in
pixels, centerness logit, class logits) over the A = sum(H/s * W/s) points of strides 8, 16, 32,
so export, profiling, pruning and quantisation treat a detector like any single-output model;
decoding and NMS are the post-process (`deepshrink.detection.decoding`)."""

from __future__ import annotations

import torch
import torch.nn as nn

from deepshrink.detection.backbones import BACKBONES, Backbone
from deepshrink.detection.neck import PAN, FCOSHead
from deepshrink.errors import ConfigError
from deepshrink.models.registry import CIFAR_MEAN, CIFAR_STD, MODELS
from deepshrink.models.zoo.layers import require_float, require_int
from deepshrink.models.zoo.mobilenet_v2 import make_divisible

STRIDES = (8, 16, 32)
INPUT_SIZE = (3, 320, 320)
IMAGENET_MEAN, IMAGENET_STD = CIFAR_MEAN, CIFAR_STD  # the zoo's constants are ImageNet's statistics
HIGHWAY_CLASSES = 5  # the default class count: ../shared/datasets/highway-det-320


class FCOS(nn.Module):
    def __init__(self, backbone: nn.Module, num_classes: int, neck_width: int, head_depth: int) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.strides = STRIDES
        self.backbone = backbone
        self.neck = PAN(backbone.channels, neck_width)
        self.head = FCOSHead(neck_width, num_classes, head_depth, STRIDES)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        c3, c4, c5 = self.backbone(x)
        return self.head(self.neck(c3, c4, c5))

    def anchor_points(
        self, height: int, width: int, device: torch.device | str = "cpu"
    ) -> tuple[torch.Tensor, torch.Tensor]:
        return anchor_points(height, width, self.strides, device)


def anchor_points(
    height: int, width: int, strides: tuple[int, ...] = STRIDES, device: torch.device | str = "cpu"
) -> tuple[torch.Tensor, torch.Tensor]:
    """Centres of every output cell, level by level in the network's output order: points [A, 2]
    (x, y in input pixels) and the stride of each point [A]."""
    if height % max(strides) or width % max(strides):
        raise ConfigError(f"detector input {height}x{width}: both sides must be multiples of {max(strides)}")
    points, point_strides = [], []
    for stride in strides:
        ys = (torch.arange(height // stride, device=device, dtype=torch.float32) + 0.5) * stride
        xs = (torch.arange(width // stride, device=device, dtype=torch.float32) + 0.5) * stride
        grid_y, grid_x = torch.meshgrid(ys, xs, indexing="ij")
        points.append(torch.stack([grid_x.flatten(), grid_y.flatten()], dim=1))
        point_strides.append(torch.full((grid_x.numel(),), float(stride), device=device))
    return torch.cat(points), torch.cat(point_strides)


def build_fcos(
    backbone: Backbone | str,
    num_classes: int = HIGHWAY_CLASSES,
    *,
    width_mult: float = 1.0,
    depth_mult: float = 1.0,
    neck_width: int | None = None,
    head_depth: int = 2,
) -> FCOS:
    """An FCOS detector; `neck_width` defaults to 64 x width_mult, `head_depth` is the number of
    shared 3x3 convolutions in each head tower."""
    name = f"fcos_{Backbone(backbone).value}"
    require_int(name, "num_classes", num_classes, 1)
    width = require_float(name, "width_mult", width_mult, lambda v: 0 < v <= 4, "in (0, 4]")
    depth = require_float(name, "depth_mult", depth_mult, lambda v: 0 < v <= 4, "in (0, 4]")
    require_int(name, "head_depth", head_depth, 1)
    neck = make_divisible(64 * width) if neck_width is None else require_int(name, "neck_width", neck_width, 8)
    return FCOS(BACKBONES[Backbone(backbone)](width, depth), num_classes, neck, head_depth)


_COMMON = dict(input_size=INPUT_SIZE, mean=IMAGENET_MEAN, std=IMAGENET_STD, num_classes=HIGHWAY_CLASSES,
               family="fcos", task="detection")


@MODELS.register("fcos_resnet", params=3_239_917, **_COMMON,
                 description="FCOS detector: zoo BasicBlock ResNet backbone (ResNet-18 layout, half width), "
                             "PAN neck, shared head")
def fcos_resnet(num_classes: int = HIGHWAY_CLASSES, **kwargs) -> FCOS:
    return build_fcos(Backbone.RESNET, num_classes, **kwargs)


@MODELS.register("fcos_mobilenet_v2", params=2_291_213, **_COMMON,
                 description="FCOS detector: MobileNetV2 backbone (ImageNet strides), PAN neck, shared head")
def fcos_mobilenet_v2(num_classes: int = HIGHWAY_CLASSES, **kwargs) -> FCOS:
    return build_fcos(Backbone.MOBILENET_V2, num_classes, **kwargs)
