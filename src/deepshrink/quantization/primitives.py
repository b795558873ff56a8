"""Uniform quantisation maths (seed 000 §3, eqs. 1-5) as pure tensor functions.

    S = (R_max - R_min) / (Q_max - Q_min)        (1)
    Z = Q_max - R_max / S                        (2, 5)
    Q = clamp(round(R / S + Z), Q_min, Q_max)    (3)
    R = (Q - Z) * S                              (4)

Per-channel variants take `axis` (the channel dimension of the tensor); scale and zero point are
then 1-D with one entry per channel. Rounding is half-to-even, as ONNX QuantizeLinear does, so
fake quantisation and the deployed int8 graph round identically. A signed 1-bit grid is binary:
Q in {-1, +1} with R = Q * S (no zero point), S = mean |R| (the L2-optimal binary scale)."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from deepshrink.errors import ConfigError

MIN_BITS, MAX_BITS = 1, 8
_EPS = 1e-8


@dataclass(frozen=True)
class QuantGrid:
    """An integer grid: `bits`, signed or not, symmetric (zero point 0) or affine, and `narrow`
    (drop the most negative code so a signed grid is symmetric, e.g. int8 -> [-127, 127])."""

    bits: int = 8
    signed: bool = True
    symmetric: bool = True
    narrow: bool = False

    def __post_init__(self) -> None:
        check_bits(self.bits)

    @property
    def binary(self) -> bool:
        return self.bits == 1 and self.signed

    @property
    def qmin(self) -> int:
        if self.binary:
            return -1
        if not self.signed:
            return 0
        return -(2 ** (self.bits - 1)) + (1 if self.narrow else 0)

    @property
    def qmax(self) -> int:
        if self.binary:
            return 1
        return 2**self.bits - 1 if not self.signed else 2 ** (self.bits - 1) - 1

    @property
    def levels(self) -> int:
        return 2 if self.binary else self.qmax - self.qmin + 1


def check_bits(bits: int, field: str = "bits") -> int:
    if isinstance(bits, bool) or not isinstance(bits, int) or not MIN_BITS <= bits <= MAX_BITS:
        raise ConfigError(f"{field}={bits!r} is not supported: choose an integer bit-width from {MIN_BITS} to {MAX_BITS}")
    return bits


def channel_view(t: torch.Tensor, x: torch.Tensor, axis: int | None) -> torch.Tensor:
    """Reshape a per-channel vector so it broadcasts against `x` along `axis`."""
    if axis is None or t.dim() == 0:
        return t
    shape = [1] * x.dim()
    shape[axis] = -1
    return t.reshape(shape)


def reduce_dims(x: torch.Tensor, axis: int | None) -> list[int]:
    return [d for d in range(x.dim()) if d != (axis % x.dim() if axis is not None else None)]


def tensor_range(x: torch.Tensor, axis: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """(min, max) over the whole tensor, or per channel along `axis`."""
    if axis is None:
        return x.min(), x.max()
    dims = reduce_dims(x, axis)
    return x.amin(dim=dims), x.amax(dim=dims)


def compute_qparams(min_val: torch.Tensor, max_val: torch.Tensor, grid: QuantGrid) -> tuple[torch.Tensor, torch.Tensor]:
    """Scale and integer zero point for the real range [min_val, max_val] (tensors, any shape).

    The range is widened to contain 0 so that zero (padding, ReLU) is exact. Symmetric signed
    grids use S = max |R| / Q_max and Z = 0; symmetric unsigned grids start at zero (Z = 0,
    S = R_max / Q_max), the usual choice for post-ReLU tensors."""
    if grid.binary:
        raise ConfigError("a binary (1-bit signed) grid has no range-based scale: use binary_scale(x)")
    min_val = torch.minimum(torch.as_tensor(min_val, dtype=torch.float32), torch.zeros(()))
    max_val = torch.maximum(torch.as_tensor(max_val, dtype=torch.float32), torch.zeros(()))
    if grid.symmetric:
        bound = torch.maximum(-min_val, max_val) if grid.signed else max_val
        scale = torch.clamp(bound / grid.qmax, min=_EPS)
        return scale, torch.zeros_like(scale)
    scale = torch.clamp((max_val - min_val) / (grid.qmax - grid.qmin), min=_EPS)  # eq. 1
    zero_point = torch.clamp(torch.round(grid.qmax - max_val / scale), grid.qmin, grid.qmax)  # eq. 2 / 5
    return scale, zero_point


def binary_scale(x: torch.Tensor, axis: int | None = None) -> torch.Tensor:
    """The scale minimising ||x - S * sign(x)||^2: mean |x| (per channel along `axis`)."""
    if axis is None:
        return x.abs().mean().clamp(min=_EPS)
    return x.abs().mean(dim=reduce_dims(x, axis)).clamp(min=_EPS)


def quantize(x: torch.Tensor, scale: torch.Tensor, zero_point: torch.Tensor, grid: QuantGrid, axis: int | None = None) -> torch.Tensor:
    """Eq. 3: integer codes (as an int32 tensor). Binary grids return sign(x) in {-1, +1}."""
    if grid.binary:
        return torch.where(x >= 0, 1, -1).to(torch.int32)
    scale, zero_point = channel_view(scale, x, axis), channel_view(zero_point, x, axis)
    return torch.clamp(torch.round(x / scale) + zero_point, grid.qmin, grid.qmax).to(torch.int32)


def dequantize(q: torch.Tensor, scale: torch.Tensor, zero_point: torch.Tensor, axis: int | None = None) -> torch.Tensor:
    """Eq. 4: R = (Q - Z) * S."""
    return (q.to(torch.float32) - channel_view(zero_point, q, axis)) * channel_view(scale, q, axis)


def round_ste(x: torch.Tensor) -> torch.Tensor:
    """round() forward, identity backward (the straight-through estimator)."""
    return x + (torch.round(x) - x).detach()


def sign_ste(x: torch.Tensor) -> torch.Tensor:
    """sign() forward (0 maps to +1), clipped identity backward (gradient only where |x| <= 1)."""
    hard = torch.where(x >= 0, 1.0, -1.0).to(x.dtype)
    soft = torch.clamp(x, -1.0, 1.0)
    return soft + (hard - soft).detach()


def fake_quantize(x: torch.Tensor, scale: torch.Tensor, zero_point: torch.Tensor, grid: QuantGrid, axis: int | None = None) -> torch.Tensor:
    """quantize -> dequantize with the clipped STE: gradients pass inside the grid's range and are
    zero outside; when `scale` requires grad it receives the LSQ gradient by autograd."""
    if grid.binary:
        return sign_ste(x / channel_view(scale, x, axis)) * channel_view(scale, x, axis)
    scale_v, zp_v = channel_view(scale, x, axis), channel_view(zero_point, x, axis)
    q = torch.clamp(round_ste(x / scale_v) + zp_v, grid.qmin, grid.qmax)
    return (q - zp_v) * scale_v


def grad_scale(t: torch.Tensor, factor: float) -> torch.Tensor:
    """Identity forward, gradient multiplied by `factor` (LSQ's step-size gradient scaling)."""
    return (t - t * factor).detach() + t * factor


def ternary_threshold(w: torch.Tensor, axis: int | None = 0, ratio: float = 0.7) -> tuple[torch.Tensor, torch.Tensor]:
    """TWN (Li et al. 2016): threshold Delta = 0.7 * mean |w| and scale alpha = mean |w| over
    |w| > Delta, per channel along `axis`. Returns (delta, alpha)."""
    dims = reduce_dims(w, axis)
    delta = ratio * w.abs().mean(dim=dims)
    mask = (w.abs() > channel_view(delta, w, axis)).to(w.dtype)
    alpha = (w.abs() * mask).sum(dim=dims) / mask.sum(dim=dims).clamp(min=1.0)
    return delta, alpha.clamp(min=_EPS)


def sqnr_db(reference: torch.Tensor, approximation: torch.Tensor) -> float:
    """Signal-to-quantisation-noise ratio in dB."""
    reference, approximation = reference.detach().float(), approximation.detach().float()
    noise = (reference - approximation).pow(2).sum().clamp(min=1e-20)
    return float(10 * torch.log10(reference.pow(2).sum().clamp(min=1e-20) / noise))
