"""Building blocks shared by the zoo. They are small named modules with plain-int attributes so
that pruning, quantisation and export can recognise them by type and rewrite them."""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn as nn
import torch.nn.functional as F

from deepshrink.errors import ConfigError, ModelError


class ConvBNAct(nn.Module):
    """Conv2d (no bias: BatchNorm follows) → BatchNorm2d → activation (Identity when `act` is None)."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int = 3,
        stride: int = 1,
        groups: int = 1,
        act: type[nn.Module] | None = nn.ReLU,
    ) -> None:
        super().__init__()
        self.conv = nn.Conv2d(
            in_channels, out_channels, kernel_size, stride, padding=kernel_size // 2, groups=groups, bias=False
        )
        self.bn = nn.BatchNorm2d(out_channels)
        self.act = act() if act is not None else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.bn(self.conv(x)))


class ChannelPadShortcut(nn.Module):
    """Option-A shortcut of He et al. 2016: keep every `stride`-th pixel, then add `pad_front` zero
    channels before and `pad_back` after. No parameters, so checkpoints never mention it.

    Pruning recognises this type and rewrites the pad widths when it removes block-output channels.
    `pool=True` subsamples with a kernel-1 max-pool instead of a strided slice: the same numbers
    (a 1-pixel window returns that pixel), but expressible in runtimes without strided slicing (ncnn)."""

    def __init__(self, stride: int, pad_front: int, pad_back: int, *, pool: bool = False) -> None:
        super().__init__()
        for name, value, low in (("stride", stride, 1), ("pad_front", pad_front, 0), ("pad_back", pad_back, 0)):
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ModelError(f"ChannelPadShortcut: {name} must be an int >= {low}, got {value!r}")
        self.stride = stride
        self.pad_front = pad_front
        self.pad_back = pad_back
        self.pool = bool(pool)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # Branches read plain attributes fixed at build time, so torch.fx traces a straight graph.
        if self.stride > 1:
            if self.pool:
                x = F.max_pool2d(x, kernel_size=1, stride=self.stride)
            else:
                x = x[:, :, :: self.stride, :: self.stride]
        return F.pad(x, (0, 0, 0, 0, self.pad_front, self.pad_back))

    def extra_repr(self) -> str:
        return f"stride={self.stride}, pad_front={self.pad_front}, pad_back={self.pad_back}, pool={self.pool}"


def use_pooled_shortcuts_(model: nn.Module, enabled: bool = True) -> nn.Module:
    """In place: switch every ChannelPadShortcut to kernel-1 pooling (or back to slicing)."""
    for module in model.modules():
        if isinstance(module, ChannelPadShortcut):
            module.pool = enabled
    return model


def init_weights(model: nn.Module) -> nn.Module:
    """He-normal convolutions (fan-out, as torchvision), unit BatchNorm, default Linear init."""
    for module in model.modules():
        if isinstance(module, nn.Conv2d):
            nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.BatchNorm2d):
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)
    return model


def require_int(model: str, name: str, value: object, low: int) -> int:
    """A factory argument that must be an int >= low; the error names the model and the argument."""
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise ConfigError(f"model '{model}': {name} must be an integer >= {low}, got {value!r}")
    return value


def require_float(model: str, name: str, value: object, check: Callable[[float], bool], expected: str) -> float:
    """A real-number factory argument; the error names the model, the argument and the valid range."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not check(float(value)):
        raise ConfigError(f"model '{model}': {name} must be {expected}, got {value!r}")
    return float(value)
