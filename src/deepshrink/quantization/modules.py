"""Quantised layers swapped in for nn.Conv1d/Conv2d/nn.Linear: the same parameters (so state
dicts keep their names) plus a `weight_quant` submodule applied on every forward."""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from deepshrink.quantization.primitives import round_ste
from deepshrink.quantization.weight_quant import WeightQuant

QUANTIZABLE = (nn.Conv1d, nn.Conv2d, nn.Linear)


class QuantMixin:
    """Shared by the quantised layers: build from a float layer, give back the float layer."""

    weight: nn.Parameter
    weight_quant: WeightQuant

    @classmethod
    def from_float(cls, layer: nn.Module, weight_quant: WeightQuant, *, init: bool = True) -> nn.Module:
        new = rebuild(cls, layer)
        new.weight_quant = weight_quant
        if init:
            weight_quant.init(layer.weight)
        return new

    def quantized_weight(self) -> torch.Tensor:
        return self.weight_quant(self.weight)

    def link_input(self, quantizer: nn.Module | None) -> None:
        """Remember the activation quantiser feeding this layer (not registered as a submodule:
        it belongs to the graph) so the bias can live on the int32 grid s_x * s_w."""
        object.__setattr__(self, "input_quant", quantizer)

    def bias_scale(self) -> torch.Tensor | None:
        return None if self.bias is None else self._bias_step()

    def _bias_step(self) -> torch.Tensor | None:
        quantizer = self.__dict__.get("input_quant")
        if quantizer is None or quantizer.calibrating:
            return None
        return (quantizer.current_scale() * self.weight_quant.step().detach()).expand(self.weight.shape[0])

    def quantized_bias(self, bias: torch.Tensor | None = None) -> torch.Tensor | None:
        """The bias (this layer's, or `bias` for a folded variant of it) rounded to int32 codes of
        step s_x * s_w, as the int8 kernels add it."""
        bias = self.bias if bias is None else bias
        scale = None if bias is None else self._bias_step()
        return bias if scale is None else round_ste(bias / scale) * scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.compute(x, self.quantized_weight(), self.quantized_bias())

    def to_float(self) -> nn.Module:
        """The plain float layer with the same (unquantised) parameters."""
        return rebuild(FLOAT_OF[type(self)], self)


def rebuild(cls: type[nn.Module], layer: nn.Module) -> nn.Module:
    """An instance of `cls` with the hyper-parameters of `layer` and its very parameter objects."""
    if isinstance(layer, nn.Linear):
        args = dict(in_features=layer.in_features, out_features=layer.out_features)
    else:
        args = dict(
            in_channels=layer.in_channels, out_channels=layer.out_channels, kernel_size=layer.kernel_size,
            stride=layer.stride, padding=layer.padding, dilation=layer.dilation, groups=layer.groups,
            padding_mode=layer.padding_mode,
        )
    new = cls(**args, bias=layer.bias is not None, device="meta")
    new.weight = layer.weight
    new.bias = layer.bias
    new.train(layer.training)
    return new


class QuantConv1d(QuantMixin, nn.Conv1d):
    def compute(self, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
        return self._conv_forward(x, weight, bias)

    forward = QuantMixin.forward


class QuantConv2d(QuantMixin, nn.Conv2d):
    def compute(self, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
        return self._conv_forward(x, weight, bias)

    forward = QuantMixin.forward


class QuantLinear(QuantMixin, nn.Linear):
    def compute(self, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
        return F.linear(x, weight, bias)

    forward = QuantMixin.forward


QUANT_OF: dict[type[nn.Module], type[nn.Module]] = {nn.Conv1d: QuantConv1d, nn.Conv2d: QuantConv2d, nn.Linear: QuantLinear}
FLOAT_OF = {q: f for f, q in QUANT_OF.items()}
QUANT_LAYERS = tuple(QUANT_OF.values())


def quant_class(layer: nn.Module) -> type[nn.Module] | None:
    """The quantised class for an exact float layer type (subclasses are not assumed compatible)."""
    return QUANT_OF.get(type(layer))
