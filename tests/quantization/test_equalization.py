from __future__ import annotations

import torch

from deepshrink.quantization import equalize, fold_bn
from deepshrink.quantization.equalization import equalization_pairs
from deepshrink.quantization.graph import trace
from deepshrink.quantization.primitives import QuantGrid, compute_qparams, fake_quantize, sqnr_db, tensor_range
from quant_models import SIZE, SkewedChain, tiny_resnet


def _ranges(layer, axis):
    w = layer.weight.detach().abs()
    return w.transpose(0, 1).reshape(w.shape[1], -1).amax(1) if axis == 1 else w.reshape(w.shape[0], -1).amax(1)


def test_equalization_preserves_the_float_function():
    model = SkewedChain().eval()
    equalized = equalize(model)
    x = torch.randn(4, *SIZE)
    torch.testing.assert_close(equalized(x), model(x), rtol=1e-4, atol=1e-5)
    assert equalized.c1.weight.data_ptr() != model.c1.weight.data_ptr()  # a new model


def test_equalization_balances_channel_ranges():
    equalized = equalize(SkewedChain().eval())
    torch.testing.assert_close(_ranges(equalized.c1, 0), _ranges(equalized.c2, 1), rtol=1e-3, atol=1e-6)
    torch.testing.assert_close(_ranges(equalized.c2, 0), _ranges(equalized.c3, 1), rtol=1e-3, atol=1e-6)


def test_equalization_helps_per_tensor_quantization():
    """Output SQNR of the network with every weight on one 6-bit per-tensor grid."""
    grid = QuantGrid(6, narrow=True)
    x = torch.randn(16, *SIZE)

    def quantized_output_sqnr(model):
        reference = model(x)
        with torch.no_grad():
            for layer in (model.c1, model.c2, model.c3):
                scale, zero_point = compute_qparams(*tensor_range(layer.weight), grid)
                layer.weight.copy_(fake_quantize(layer.weight, scale, zero_point, grid))
        return sqnr_db(reference, model(x))

    plain = quantized_output_sqnr(SkewedChain().eval())
    equalized = quantized_output_sqnr(equalize(SkewedChain().eval()))
    assert equalized > plain + 10, (plain, equalized)


def test_resnet_pairs_are_the_conv_relu_conv_inside_blocks():
    pairs = equalization_pairs(trace(fold_bn(tiny_resnet())))
    assert pairs == [(f"layer{i}.0.conv1", f"layer{i}.0.conv2") for i in (1, 2, 3)]
    model = fold_bn(tiny_resnet())
    x = torch.randn(2, *SIZE)
    torch.testing.assert_close(equalize(model)(x), model(x), rtol=1e-4, atol=1e-4)
