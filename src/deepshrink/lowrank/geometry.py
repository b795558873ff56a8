"""What a decomposed convolution must keep from the original: channels, kernel, stride, padding,
dilation, padding mode, bias, dtype and device; and builders for the plain convolutions the
factors go into (full kernel, vertical kx1, horizontal 1xk, pointwise)."""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

import torch
import torch.nn as nn

from deepshrink.errors import ModelError


class Axis(Enum):
    BOTH = "both"  # the original kh x kw kernel
    VERTICAL = "vertical"  # kh x 1: stride, padding, dilation along the height only
    HORIZONTAL = "horizontal"  # 1 x kw: along the width only
    POINT = "point"  # 1 x 1, stride 1, no padding


@dataclass(frozen=True)
class ConvGeometry:
    in_channels: int
    out_channels: int
    kernel: tuple[int, int]
    stride: tuple[int, int]
    padding: tuple[int, int]
    dilation: tuple[int, int]
    padding_mode: str
    bias: bool
    dtype: torch.dtype
    device: torch.device

    @classmethod
    def of(cls, name: str, conv: nn.Conv2d) -> "ConvGeometry":
        if conv.groups != 1:
            raise ModelError(
                f"layer '{name}' is a grouped convolution (groups={conv.groups}); low-rank decomposition "
                "needs groups=1: exclude it"
            )
        return cls(
            in_channels=conv.in_channels,
            out_channels=conv.out_channels,
            kernel=tuple(conv.kernel_size),
            stride=tuple(conv.stride),
            padding=_explicit_padding(name, conv),
            dilation=tuple(conv.dilation),
            padding_mode=conv.padding_mode,
            bias=conv.bias is not None,
            dtype=conv.weight.dtype,
            device=conv.weight.device,
        )

    def conv(self, in_ch: int, out_ch: int, axis: Axis, *, depthwise: bool = False, bias: bool = False) -> nn.Conv2d:
        """A plain Conv2d covering `axis` of the original kernel (depthwise: groups = channels)."""
        pick = _AXIS_PICK[axis]
        return nn.Conv2d(
            in_ch,
            out_ch,
            kernel_size=pick(self.kernel, 1),
            stride=pick(self.stride, 1),
            padding=pick(self.padding, 0),
            dilation=pick(self.dilation, 1),
            groups=in_ch if depthwise else 1,
            bias=bias,
            padding_mode=self.padding_mode,
            dtype=self.dtype,
            device=self.device,
        )

    @property
    def kernel_area(self) -> int:
        return self.kernel[0] * self.kernel[1]


_AXIS_PICK = {
    Axis.BOTH: lambda pair, neutral: pair,
    Axis.VERTICAL: lambda pair, neutral: (pair[0], neutral),
    Axis.HORIZONTAL: lambda pair, neutral: (neutral, pair[1]),
    Axis.POINT: lambda pair, neutral: (neutral, neutral),
}


def _explicit_padding(name: str, conv: nn.Conv2d) -> tuple[int, int]:
    """Numbers for padding='valid'/'same' so the padding can be split between the two axes."""
    if not isinstance(conv.padding, str):
        return tuple(conv.padding)
    if conv.padding == "valid":
        return (0, 0)
    total = [d * (k - 1) for d, k in zip(conv.dilation, conv.kernel_size)]
    if any(t % 2 for t in total):
        raise ModelError(
            f"layer '{name}': padding='same' with an even kernel pads unevenly, which the split "
            "convolutions cannot reproduce; use explicit padding"
        )
    return (total[0] // 2, total[1] // 2)


def linear(in_features: int, out_features: int, *, bias: bool, like: nn.Linear) -> nn.Linear:
    return nn.Linear(in_features, out_features, bias=bias, dtype=like.weight.dtype, device=like.weight.device)
