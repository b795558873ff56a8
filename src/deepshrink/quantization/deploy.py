"""The deployable form of a fake-quant model: integer weights and frozen activation ranges.

`to_deploy(model)` swaps each Quant* layer for a Deploy* layer holding int8 codes + per-channel
scales, and each activation quantiser for a DeployAct holding its scale and zero point. In
PyTorch it computes exactly what the fake-quant model computes in eval mode; exported with the
TorchScript exporter, the custom autograd functions below become ONNX QuantizeLinear /
DequantizeLinear nodes carrying those very integers and scales (int8 initialisers for weights),
which ONNX Runtime fuses into QLinearConv / QLinearAdd / QGemm int8 kernels."""

from __future__ import annotations

import copy

import torch
import torch.nn as nn
import torch.nn.functional as F

from deepshrink.errors import ExportError
from deepshrink.models.spec import attach_spec, spec_of
from deepshrink.quantization.act_quant import ActQuant
from deepshrink.quantization.modules import QUANT_LAYERS
from deepshrink.quantization.prepare import ACT_MODULE, act_quantizers
from deepshrink.quantization.primitives import channel_view

UINT8 = (0, 255)


class _QuantDequant(torch.autograd.Function):
    """x -> QuantizeLinear -> DequantizeLinear with a per-tensor scale and typed zero point; codes
    limited to [qmin, qmax] by a Clip on the uint8 codes when that grid is narrower than the
    container. Clipping the codes, not the float input, computes the same values (the grid's
    ends are levels of it) and leaves each producer's Conv -> QuantizeLinear adjacent, so ONNX
    Runtime still fuses it into QLinearConv: a float Clip in between kept every such producer in
    float (half the convolutions of a W4A4 ResNet)."""

    @staticmethod
    def forward(ctx, x, scale, zero_point, qmin: int, qmax: int):  # noqa: ANN001 - autograd signature
        z = zero_point.float()
        return (torch.clamp(torch.round(x / scale) + z, qmin, qmax) - z) * scale

    @staticmethod
    def symbolic(g, x, scale, zero_point, qmin, qmax):  # noqa: ANN001
        codes = g.op("QuantizeLinear", x, scale, zero_point)
        if (qmin, qmax) != UINT8:
            low, high = (g.op("Constant", value_t=torch.tensor(v, dtype=torch.uint8)) for v in (qmin, qmax))
            codes = g.op("Clip", codes, low, high)
        return g.op("DequantizeLinear", codes, scale, zero_point)


class _DequantWeight(torch.autograd.Function):
    """int8 weight codes -> DequantizeLinear (per output channel, axis 0, zero point 0)."""

    @staticmethod
    def forward(ctx, codes, scale, zero_point):  # noqa: ANN001
        return codes.float() * channel_view(scale, codes, 0)

    @staticmethod
    def symbolic(g, codes, scale, zero_point):  # noqa: ANN001
        return g.op("DequantizeLinear", codes, scale, zero_point, axis_i=0)


class _DequantBias(torch.autograd.Function):
    """int32 bias codes -> DequantizeLinear. The zero point is 0, ONNX's default, so none is
    stored (four bytes per channel saved; ONNX Runtime's fusions accept its absence for biases)."""

    @staticmethod
    def forward(ctx, codes, scale):  # noqa: ANN001
        return codes.float() * scale

    @staticmethod
    def symbolic(g, codes, scale):  # noqa: ANN001
        return g.op("DequantizeLinear", codes, scale, axis_i=0)


class DeployAct(nn.Module):
    """A frozen activation quantiser, always in a uint8 container (ONNX Runtime's fast U8S8
    kernels, and QLinearAdd needs both inputs of one type): a signed grid is shifted by 128,
    which changes no value. Grids narrower than the container clip their codes (ONNX
    QuantizeLinear only saturates at the container's limits); binary grids take a sign."""

    def __init__(self, quantizer: ActQuant) -> None:
        super().__init__()
        scale, zero_point = quantizer.deploy_params()
        grid = quantizer.grid
        self.binary = grid.binary  # sign(x) * scale
        offset = 128 if grid.qmin < 0 else 0
        if not 0 <= zero_point + offset <= 255:
            raise ExportError(f"activation zero point {zero_point} does not fit uint8")
        self.register_buffer("scale", torch.tensor(scale, dtype=torch.float32))
        self.register_buffer("zero_point", torch.tensor(zero_point + offset, dtype=torch.uint8))
        self.codes = UINT8 if self.binary else (grid.qmin + offset, grid.qmax + offset)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.binary:
            x = torch.where(x >= 0, self.scale, -self.scale)
        return _QuantDequant.apply(x, self.scale, self.zero_point, *self.codes)


class DeployLayer(nn.Module):
    """Conv1d/Conv2d/Linear with int8 weight codes and per-channel scales. The bias is already on
    the int32 grid s_x * s_w (the fake-quant model rounds it there). Linear layers store it as
    int32 codes (ONNX Runtime's QGemm fusion requires a DequantizeLinear bias); convolutions store
    the rounded float value, which ONNX Runtime turns back into the same int32 codes when it
    builds QLinearConv, for half the bytes of codes plus per-channel scales."""

    def __init__(self, layer: nn.Module, name: str) -> None:
        super().__init__()
        codes, scale = layer.weight_quant.integer(layer.weight.detach())
        if codes.abs().max() > 127:
            raise ExportError(
                f"layer '{name}': weight codes reach {int(codes.abs().max())}, beyond int8 "
                f"({type(layer.weight_quant).__name__} at {layer.weight_quant.bits} bits)"
            )
        self.register_buffer("weight_codes", codes.to(torch.int8))
        self.register_buffer("weight_scale", scale.float())
        # ONNX Runtime's QGemm fusion wants the weight's zero point spelled out.
        self.register_buffer("weight_zero_point", torch.zeros(scale.shape[0], dtype=torch.int8))
        self.kind = "linear" if isinstance(layer, nn.Linear) else "conv"
        self.bias = None
        bias_scale = layer.bias_scale()
        self.has_int_bias = bias_scale is not None and self.kind == "linear"
        if self.has_int_bias:
            self.register_buffer("bias_codes", torch.round(layer.bias.detach() / bias_scale).to(torch.int32))
            self.register_buffer("bias_scale", bias_scale.clone().float())
        elif layer.bias is not None:
            self.bias = nn.Parameter(layer.quantized_bias().detach().clone(), requires_grad=False)
        self.conv_args = () if self.kind == "linear" else (layer.stride, layer.padding, layer.dilation, layer.groups)
        self.conv = {1: F.conv1d, 2: F.conv2d}.get(codes.dim() - 2)
        if self.kind == "conv" and layer.padding_mode != "zeros":
            raise ExportError(f"layer '{name}': padding_mode '{layer.padding_mode}' is not supported in int8 export")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = _DequantWeight.apply(self.weight_codes, self.weight_scale, self.weight_zero_point)
        bias = self.bias
        if self.has_int_bias:
            bias = _DequantBias.apply(self.bias_codes, self.bias_scale)
        if self.kind == "linear":
            return F.linear(x, w, bias)
        return self.conv(x, w, bias, *self.conv_args)


def to_deploy(model: nn.Module) -> nn.Module:
    """A copy of the fake-quant `model` with integer layers and frozen activation quantisers."""
    deployed = copy.deepcopy(model).eval()
    for name, module in list(deployed.named_modules()):
        if isinstance(module, QUANT_LAYERS):
            _replace(deployed, name, DeployLayer(module, name))
    container = getattr(deployed, ACT_MODULE, None)
    for name, quantizer in act_quantizers(deployed).items():
        container[name] = DeployAct(quantizer)
    if hasattr(deployed, "recompile"):
        deployed.recompile()
    spec = spec_of(model)  # GraphModule's deepcopy drops instance attributes such as the spec
    return attach_spec(deployed, spec) if spec is not None else deployed


def _replace(root: nn.Module, name: str, module: nn.Module) -> None:
    parent_name, _, child = name.rpartition(".")
    setattr(root.get_submodule(parent_name) if parent_name else root, child, module)
