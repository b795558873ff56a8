"""A PAN neck (Liu et al. 2018) and an FCOS head with towers shared across scales.

Neck: 1x1 laterals bring C3..C5 to one width; a top-down path adds the nearest-upsampled coarser
map (FPN), a bottom-up path concatenates a stride-2 convolution of the finer map (PAN). So the
graph holds the three constructs pruning must follow through a detector: interpolate, add across
scales and concat across scales.

Head: the convolutions of each tower are shared by the three levels (as in FCOS) while each level
keeps its own BatchNorm (levels have different statistics; a shared BN would mix them)."""

from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from deepshrink.models.zoo.layers import ConvBNAct

PRIOR_PROBABILITY = 0.01  # initial foreground probability of the classifier (Lin et al. 2017)


class PAN(nn.Module):
    def __init__(self, in_channels: tuple[int, int, int], width: int) -> None:
        super().__init__()
        c3, c4, c5 = in_channels
        self.lateral3, self.lateral4 = ConvBNAct(c3, width, 1), ConvBNAct(c4, width, 1)
        self.lateral5 = ConvBNAct(c5, width, 1)
        self.smooth4, self.smooth3 = ConvBNAct(width, width, 3), ConvBNAct(width, width, 3)
        self.down3, self.down4 = ConvBNAct(width, width, 3, 2), ConvBNAct(width, width, 3, 2)
        self.fuse4, self.fuse5 = ConvBNAct(2 * width, width, 3), ConvBNAct(2 * width, width, 3)

    def forward(self, c3: torch.Tensor, c4: torch.Tensor, c5: torch.Tensor) -> tuple[torch.Tensor, ...]:
        t5 = self.lateral5(c5)
        t4 = self.smooth4(self.lateral4(c4) + F.interpolate(t5, scale_factor=2.0, mode="nearest"))
        p3 = self.smooth3(self.lateral3(c3) + F.interpolate(t4, scale_factor=2.0, mode="nearest"))
        p4 = self.fuse4(torch.cat([self.down3(p3), t4], dim=1))
        p5 = self.fuse5(torch.cat([self.down4(p4), t5], dim=1))
        return p3, p4, p5


class SharedTower(nn.Module):
    """`depth` 3x3 convolutions shared by every level, each followed by that level's BN and ReLU."""

    def __init__(self, width: int, depth: int, levels: int) -> None:
        super().__init__()
        self.convs = nn.ModuleList(nn.Conv2d(width, width, 3, padding=1, bias=False) for _ in range(depth))
        self.norms = nn.ModuleList(
            nn.ModuleList(nn.BatchNorm2d(width) for _ in range(depth)) for _ in range(levels)
        )

    def forward(self, x: torch.Tensor, level: int) -> torch.Tensor:
        for conv, norm in zip(self.convs, self.norms[level]):
            x = F.relu(norm(conv(x)))
        return x


class Scale(nn.Module):
    """A learnable scalar per level for the box distances (FCOS)."""

    def __init__(self) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.ones(()))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.scale


class FCOSHead(nn.Module):
    """Per level: box distances (l, t, r, b) in pixels, a centerness logit and class logits,
    concatenated as [B, 5 + C, H, W] and flattened so all levels form [B, A, 5 + C]."""

    def __init__(self, width: int, num_classes: int, depth: int, strides: tuple[int, ...]) -> None:
        super().__init__()
        self.strides = tuple(float(s) for s in strides)
        self.cls_tower = SharedTower(width, depth, len(strides))
        self.box_tower = SharedTower(width, depth, len(strides))
        self.cls_pred = nn.Conv2d(width, num_classes, 3, padding=1)
        self.box_pred = nn.Conv2d(width, 4, 3, padding=1)
        self.ctr_pred = nn.Conv2d(width, 1, 3, padding=1)
        self.scales = nn.ModuleList(Scale() for _ in strides)
        for conv in (*self.cls_tower.convs, *self.box_tower.convs, self.cls_pred, self.box_pred, self.ctr_pred):
            nn.init.normal_(conv.weight, std=0.01)
            if conv.bias is not None:
                nn.init.zeros_(conv.bias)
        nn.init.constant_(self.cls_pred.bias, -math.log((1 - PRIOR_PROBABILITY) / PRIOR_PROBABILITY))

    def forward(self, features: tuple[torch.Tensor, ...]) -> torch.Tensor:
        outputs = []
        for level, (x, stride) in enumerate(zip(features, self.strides)):
            cls = self.cls_tower(x, level)
            box = self.box_tower(x, level)
            # ReLU keeps distances >= 0 (FCOS's normalised-target variant); x stride gives pixels.
            distances = F.relu(self.scales[level](self.box_pred(box))) * stride
            out = torch.cat([distances, self.ctr_pred(box), self.cls_pred(cls)], dim=1)
            outputs.append(out.flatten(2))
        return torch.cat(outputs, dim=2).permute(0, 2, 1)
