"""Activation quantisers: one module per quantised tensor (inserted after the node producing it).

During calibration a quantiser passes its input through unchanged and feeds an observer; after
`end_calibration` it fake-quantises with the chosen scale and zero point. Learnable quantisers
(LSQ, PACT) start from the observed range and are then trained by QAT."""

from __future__ import annotations

import math

import torch
import torch.nn as nn

from deepshrink.quantization.config import ActQuantizer
from deepshrink.quantization.observers import Observer
from deepshrink.quantization.primitives import QuantGrid, fake_quantize, grad_scale, sign_ste
from deepshrink.registry import Registry

ACT_QUANTIZERS: Registry[type["ActQuant"]] = Registry("activation quantizer")


@ACT_QUANTIZERS.register(ActQuantizer.OBSERVER.value)
class ActQuant(nn.Module):
    """Affine (asymmetric) unsigned grid with scale and zero point fixed by calibration: uint8 at
    8 bits, as ONNX Runtime's U8S8 int8 kernels expect."""

    symmetric = False

    def __init__(self, bits: int, signed: bool = False) -> None:
        super().__init__()
        self.grid = self.make_grid(bits, signed)
        self.register_buffer("scale", torch.tensor(1.0))
        self.register_buffer("zero_point", torch.tensor(0.0))
        self.observer: Observer | None = None
        self.pass_index = 0

    def make_grid(self, bits: int, signed: bool) -> QuantGrid:
        return QuantGrid(bits, signed=signed and self.symmetric, symmetric=self.symmetric)

    @property
    def signed(self) -> bool:
        return self.grid.signed

    @property
    def calibrating(self) -> bool:
        return self.observer is not None

    def begin_calibration(self, observer: Observer) -> None:
        self.observer = observer

    @torch.no_grad()
    def end_calibration(self) -> None:
        observer, self.observer = self.observer, None
        if observer is None or not observer.seen:
            return  # never reached by the data: keep the identity-like default range
        self.grid = self.make_grid(self.grid.bits, bool(observer.min_val < 0))
        observer.grid = self.grid
        self.set_range(observer)

    def set_range(self, observer: Observer) -> None:
        scale, zero_point = observer.qparams()
        self.scale.copy_(scale)
        self.zero_point.copy_(zero_point)

    def step(self, x: torch.Tensor) -> torch.Tensor:
        return self.scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.observer is not None:
            if self.pass_index < self.observer.passes:
                self.observer.update(x, self.pass_index)
            return x
        return fake_quantize(x, self.step(x), self.zero_point, self.grid)

    def current_scale(self) -> torch.Tensor:
        return self.step(torch.empty(0)).detach()

    def deploy_params(self) -> tuple[float, int]:
        """(scale, integer zero point) of the deployed QuantizeLinear."""
        return float(self.current_scale()), int(self.zero_point)

    def extra_repr(self) -> str:
        return f"bits={self.grid.bits}, signed={self.signed}, scale={float(self.scale.detach()):.4g}"


@ACT_QUANTIZERS.register(ActQuantizer.LSQ.value)
class LSQActQuant(ActQuant):
    """Learned step size on a symmetric grid: unsigned [0, Q_p] for non-negative tensors (after
    ReLU), signed otherwise; gradient of the step scaled by 1 / sqrt(features * Q_p)."""

    symmetric = True

    def __init__(self, bits: int, signed: bool = False) -> None:
        super().__init__(bits, signed)
        self.scale = nn.Parameter(self.scale.clone())

    def step(self, x: torch.Tensor) -> torch.Tensor:
        value = self.scale.abs() + 1e-8
        if self.training and x.dim() > 1:
            return grad_scale(value, 1.0 / math.sqrt(x[0].numel() * max(self.grid.qmax, 1)))
        return value


@ACT_QUANTIZERS.register(ActQuantizer.PACT.value)
class PACTActQuant(ActQuant):
    """PACT (Choi et al. 2018): clip to [0, alpha] (or [-alpha, alpha] for signed tensors) with a
    learnable alpha, then quantise uniformly with step alpha / Q_max. The clip's gradient trains
    alpha; the STE passes the rest."""

    symmetric = True

    def __init__(self, bits: int, signed: bool = False) -> None:
        super().__init__(bits, signed)
        self.alpha = nn.Parameter(torch.tensor(1.0))

    def set_range(self, observer: Observer) -> None:
        super().set_range(observer)
        self.alpha.data.copy_(self.scale * self.grid.qmax)

    def step(self, x: torch.Tensor) -> torch.Tensor:
        return self.alpha.abs() / self.grid.qmax + 1e-8

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.observer is not None:
            return super().forward(x)
        alpha = self.alpha.abs()
        clipped = torch.minimum(x, alpha)
        clipped = torch.maximum(clipped, -alpha) if self.signed else torch.clamp(clipped, min=0)
        return fake_quantize(clipped, self.step(x), self.zero_point, self.grid)


@ACT_QUANTIZERS.register(ActQuantizer.BINARY.value)
class BinaryActQuant(ActQuant):
    """1-bit activations. Signed tensors: XNOR-Net's sign(x) * beta. Non-negative tensors (after
    ReLU, where sign() would be constant): {0, beta}, i.e. x >= beta / 2 -> beta. beta starts at
    mean |x| (signed) or 2 mean |x| (non-negative) and is learned like an LSQ step."""

    symmetric = True

    def __init__(self, bits: int = 1, signed: bool = True) -> None:
        super().__init__(1, signed)
        self.scale = nn.Parameter(self.scale.clone())

    def make_grid(self, bits: int, signed: bool) -> QuantGrid:
        return QuantGrid(1, signed=signed, symmetric=True)

    def begin_calibration(self, observer: Observer) -> None:
        observer.track_abs = True
        super().begin_calibration(observer)

    def set_range(self, observer: Observer) -> None:
        self.scale.data.copy_(observer.abs_mean() * (1 if self.signed else 2))

    def step(self, x: torch.Tensor) -> torch.Tensor:
        return self.scale.abs() + 1e-8

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.observer is not None:
            return super().forward(x)
        if self.signed:
            return sign_ste(x / self.step(x)) * self.step(x)
        return fake_quantize(x, self.step(x), self.zero_point, self.grid)


def build_act_quant(kind: ActQuantizer | str, bits: int, signed: bool = False) -> ActQuant:
    name = kind.value if isinstance(kind, ActQuantizer) else kind
    return ACT_QUANTIZERS.get(name)(bits, signed)
