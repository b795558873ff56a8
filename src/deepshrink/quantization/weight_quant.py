"""Weight quantisers: modules mapping a float weight to its fake-quantised value (differentiable
by the straight-through estimator) and to the integer codes the int8 deployment stores.

Every weight grid is signed and symmetric (zero point 0), per output channel by default, so each
quantiser deploys as int8 codes + one float scale per channel (ONNX DequantizeLinear, axis 0).
The grids are narrow, [-(2^(b-1) - 1), 2^(b-1) - 1]: at 2 bits {-1, 0, 1}. LSQ's whole signed
range ([-2, 1] at 2 bits) measured worse here: ResNet-20 W2A2 after 200 QAT steps 43.81 % against
51.13 % (docs/benchmarks/extra/quant_resnet20_w2a2_full_range_probe.md). `lsq_midrise` keeps all
2^b levels and the symmetry by dropping zero instead: odd codes, {-3, -1, 1, 3} at 2 bits."""

from __future__ import annotations

import math

import torch
import torch.nn as nn

from deepshrink.errors import ConfigError
from deepshrink.quantization.config import MIDRISE_MAX_BITS, WeightQuantizer
from deepshrink.quantization.observers import SEARCH_FRACTIONS, weight_range
from deepshrink.quantization.primitives import (
    QuantGrid,
    binary_scale,
    channel_view,
    compute_qparams,
    fake_quantize,
    grad_scale,
    quantize,
    reduce_dims,
    round_ste,
    ternary_threshold,
)
from deepshrink.registry import Registry

WEIGHT_QUANTIZERS: Registry[type["WeightQuant"]] = Registry("weight quantizer")


class WeightQuant(nn.Module):
    """Base: `scale` holds one step size per channel (or one for the tensor); `init(w)` sets it
    from the trained weight; `forward(w)` fake-quantises; `integer(w)` gives (codes, scale)."""

    fixed_bits: int | None = None

    def __init__(self, bits: int, channels: int, per_channel: bool = True) -> None:
        super().__init__()
        self.bits = self.fixed_bits or bits
        self.axis = 0 if per_channel else None
        self.grid = QuantGrid(self.bits, signed=True, symmetric=True, narrow=True)
        self.register_buffer("scale", torch.ones(channels if per_channel else ()))

    def init(self, w: torch.Tensor) -> None:
        with torch.no_grad():
            self.scale.copy_(self.compute_scale(w.detach()))

    def compute_scale(self, w: torch.Tensor) -> torch.Tensor:
        if self.grid.binary:
            return binary_scale(w, self.axis)
        return compute_qparams(*weight_range(w, self.grid, self.axis, search=False), self.grid)[0]

    def step(self) -> torch.Tensor:
        return self.scale

    def forward(self, w: torch.Tensor) -> torch.Tensor:
        if self.training and not isinstance(self.scale, nn.Parameter):  # weights move during QAT
            self.init(w)
        return fake_quantize(w, self.step(), torch.zeros_like(self.scale), self.grid, self.axis)

    @torch.no_grad()
    def integer(self, w: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(int codes in [-127, 127], per-channel scale) with codes * scale == forward(w)."""
        scale = channel_scale(self.step().detach(), w)
        return quantize(w, scale, torch.zeros_like(scale), self.grid, 0), scale.clone()

    def extra_repr(self) -> str:
        return f"bits={self.bits}, per_channel={self.axis is not None}"


def channel_scale(scale: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    return scale.expand(w.shape[0]) if scale.dim() == 0 else scale


WEIGHT_QUANTIZERS.register(WeightQuantizer.MINMAX.value)(WeightQuant)


@WEIGHT_QUANTIZERS.register(WeightQuantizer.MSE.value)
class MSEWeightQuant(WeightQuant):
    """Per-channel clipping chosen to minimise the weight's quantisation MSE (helps below 8 bits)."""

    def compute_scale(self, w: torch.Tensor) -> torch.Tensor:
        if self.grid.binary:
            return binary_scale(w, self.axis)
        return compute_qparams(*weight_range(w, self.grid, self.axis, search=True), self.grid)[0]


@WEIGHT_QUANTIZERS.register(WeightQuantizer.BWN.value)
class BinaryWeightQuant(WeightQuant):
    """BWN / XNOR-Net weights: sign(w) * mean |w| per channel."""

    fixed_bits = 1


@WEIGHT_QUANTIZERS.register(WeightQuantizer.LSQ.value)
class LSQWeightQuant(MSEWeightQuant):
    """Learned step size (Esser et al. 2020): the scale is a parameter trained with the weights;
    its gradient is scaled by 1 / sqrt(N * Q_p). Initialised at the MSE-optimal step."""

    def __init__(self, bits: int, channels: int, per_channel: bool = True) -> None:
        super().__init__(bits, channels, per_channel)
        self.scale = nn.Parameter(self.scale.clone())

    def step(self) -> torch.Tensor:
        return self.scale.abs() + 1e-8

    def forward(self, w: torch.Tensor) -> torch.Tensor:
        per_step = w.numel() / self.scale.numel()
        step = grad_scale(self.step(), 1.0 / math.sqrt(per_step * max(self.grid.qmax, 1)))
        return fake_quantize(w, step, torch.zeros_like(self.scale), self.grid, self.axis)


@WEIGHT_QUANTIZERS.register(WeightQuantizer.LSQ_MIDRISE.value)
class MidriseLSQWeightQuant(WeightQuant):
    """Learned step size on the mid-rise grid: 2^b levels symmetric about zero, none at zero, so
    2 bits give four levels {-3, -1, 1, 3} * s where the narrow grid has three {-1, 0, 1} * s (the
    level count of LSQ's full range and of DoReFa's grid, without either's drawbacks: LSQ's range
    is lopsided, DoReFa's step is tied to max |w|). `scale` is s, the unit of the odd integer
    codes, which deploy as int8 weights; levels are 2 s apart. Codes reach 2^b - 1, so at most
    MIDRISE_MAX_BITS = 6 bits (|code| <= 63 also keeps AVX2's 16-bit int8 sums from saturating)."""

    def __init__(self, bits: int, channels: int, per_channel: bool = True) -> None:
        if not 1 <= bits <= MIDRISE_MAX_BITS:
            raise ConfigError(f"weight quantizer 'lsq_midrise' supports 1 to {MIDRISE_MAX_BITS} bits, got {bits}")
        super().__init__(bits, channels, per_channel)
        self.scale = nn.Parameter(self.scale.clone())

    @property
    def max_code(self) -> int:
        return 2**self.bits - 1

    def step(self) -> torch.Tensor:
        return self.scale.abs() + 1e-8

    def codes(self, w: torch.Tensor, step: torch.Tensor) -> torch.Tensor:
        """Odd codes 2k + 1 (float, STE through the rounding): the level nearest to w."""
        half = 2 ** (self.bits - 1)
        k = torch.clamp(round_ste(w / (2 * step) - 0.5), -half, half - 1)
        return 2 * k + 1

    def compute_scale(self, w: torch.Tensor) -> torch.Tensor:
        """The MSE-optimal unit per channel, searched over fractions of max |w| (as `mse`)."""
        dims = reduce_dims(w, self.axis)
        top = w.abs().amax(dim=dims).clamp(min=1e-8) / self.max_code
        best, best_err = top.clone(), torch.full_like(top, math.inf)
        for fraction in SEARCH_FRACTIONS:
            step = channel_view(top * fraction, w, self.axis)
            err = (self.codes(w, step) * step - w).pow(2).sum(dim=dims)
            better = err < best_err
            best, best_err = torch.where(better, top * fraction, best), torch.where(better, err, best_err)
        return best

    def forward(self, w: torch.Tensor) -> torch.Tensor:
        per_step = w.numel() / self.scale.numel()
        step = grad_scale(self.step(), 1.0 / math.sqrt(per_step * self.max_code))
        step = channel_view(step, w, self.axis)
        return self.codes(w, step) * step

    @torch.no_grad()
    def integer(self, w: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        scale = channel_scale(self.step().detach(), w)
        return self.codes(w, channel_view(scale, w, 0)).round().to(torch.int32), scale.clone()


@WEIGHT_QUANTIZERS.register(WeightQuantizer.DOREFA.value)
class DoReFaWeightQuant(WeightQuant):
    """DoReFa-Net weights: w_n = tanh(w) / (2 max |tanh w|) + 1/2 is quantised to k bits on [0, 1]
    and mapped back to 2 q - 1, per channel, then rescaled by max |w| so folded-BN weights keep
    their magnitude. The grid has 2^k levels without zero: codes are odd integers in
    [-(2^k - 1), 2^k - 1], which fit int8 for k <= 7."""

    def compute_scale(self, w: torch.Tensor) -> torch.Tensor:
        dims = reduce_dims(w, self.axis)
        return w.abs().amax(dim=dims).clamp(min=1e-8) / (2**self.bits - 1)

    def codes(self, w: torch.Tensor) -> torch.Tensor:
        """Odd integer codes (float, with STE) in [-n, n], n = 2^k - 1."""
        n = 2**self.bits - 1
        dims = reduce_dims(w, self.axis)
        t = torch.tanh(w)
        t_max = channel_view(t.abs().amax(dim=dims).clamp(min=1e-8), w, self.axis).detach()
        unit = t / (2 * t_max) + 0.5
        return 2 * round_ste(unit * n) - n

    def forward(self, w: torch.Tensor) -> torch.Tensor:
        self.init(w)
        return self.codes(w) * channel_view(self.scale, w, self.axis)

    @torch.no_grad()
    def integer(self, w: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.codes(w).round().to(torch.int32), channel_scale(self.scale, w).clone()


@WEIGHT_QUANTIZERS.register(WeightQuantizer.TWN.value)
class TernaryWeightQuant(WeightQuant):
    """Ternary weight networks: alpha * {-1, 0, +1} with threshold 0.7 mean |w| per channel;
    the gradient passes straight through to the float weight."""

    fixed_bits = 2

    def compute_scale(self, w: torch.Tensor) -> torch.Tensor:
        return ternary_threshold(w, self.axis)[1]

    def codes(self, w: torch.Tensor) -> torch.Tensor:
        delta, _ = ternary_threshold(w.detach(), self.axis)
        return torch.sign(w.detach()) * (w.detach().abs() > channel_view(delta, w, self.axis))

    def forward(self, w: torch.Tensor) -> torch.Tensor:
        if self.training:
            self.init(w)
        hard = self.codes(w) * channel_view(self.scale, w, self.axis)
        return w + (hard - w).detach()

    @torch.no_grad()
    def integer(self, w: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.codes(w).to(torch.int32), channel_scale(self.scale, w).clone()


def build_weight_quant(kind: WeightQuantizer | str, bits: int, channels: int, per_channel: bool) -> WeightQuant:
    name = kind.value if isinstance(kind, WeightQuantizer) else kind
    return WEIGHT_QUANTIZERS.get(name)(bits, channels, per_channel)
