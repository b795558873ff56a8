from __future__ import annotations

import pytest
import torch

from deepshrink.errors import ConfigError
from deepshrink.quantization.primitives import (
    QuantGrid,
    binary_scale,
    compute_qparams,
    dequantize,
    fake_quantize,
    quantize,
    sqnr_db,
    tensor_range,
    ternary_threshold,
)

GRIDS = [
    QuantGrid(bits, signed=signed, symmetric=symmetric)
    for bits in range(2, 9)
    for signed, symmetric in ((True, True), (False, False), (True, False))
]


@pytest.mark.parametrize("grid", GRIDS, ids=lambda g: f"{'s' if g.signed else 'u'}{g.bits}-{'sym' if g.symmetric else 'asym'}")
def test_round_trip_error_is_at_most_half_a_step(grid):
    x = torch.randn(4096) * 3 + 0.5
    scale, zero_point = compute_qparams(*tensor_range(x), grid)
    q = quantize(x, scale, zero_point, grid)
    assert int(q.min()) >= grid.qmin and int(q.max()) <= grid.qmax
    error = (dequantize(q, scale, zero_point) - x).abs()
    assert float(error.max()) <= float(scale) / 2 * (1 + 1e-5)


@pytest.mark.parametrize("bits", [3, 4, 8])
def test_per_channel_beats_per_tensor_on_skewed_channels(bits):
    w = torch.randn(16, 8, 3, 3) * torch.logspace(-2, 0, 16).view(-1, 1, 1, 1)
    grid = QuantGrid(bits, narrow=True)
    s_t, z_t = compute_qparams(*tensor_range(w), grid)
    s_c, z_c = compute_qparams(*tensor_range(w, axis=0), grid)
    w_t, w_c = fake_quantize(w, s_t, z_t, grid), fake_quantize(w, s_c, z_c, grid, axis=0)
    # Each channel's own SQNR: a per-tensor grid starves the small channels.
    per_tensor = sum(sqnr_db(w[c], w_t[c]) for c in range(16)) / 16
    per_channel = sum(sqnr_db(w[c], w_c[c]) for c in range(16)) / 16
    assert s_c.shape == (16,)
    assert per_channel > per_tensor + 6  # at least one bit's worth better on average
    assert sqnr_db(w, w_c) >= sqnr_db(w, w_t)


def test_grid_ranges():
    assert (QuantGrid(8).qmin, QuantGrid(8).qmax) == (-128, 127)
    assert (QuantGrid(8, narrow=True).qmin, QuantGrid(8, narrow=True).qmax) == (-127, 127)
    assert (QuantGrid(4, signed=False, symmetric=False).qmin, QuantGrid(4, signed=False, symmetric=False).qmax) == (0, 15)
    assert (QuantGrid(1).qmin, QuantGrid(1).qmax, QuantGrid(1).levels) == (-1, 1, 2)
    assert QuantGrid(1, signed=False, symmetric=False).qmax == 1


@pytest.mark.parametrize("bits", [0, 9, 16, 2.5, True])
def test_unsupported_bit_width_is_named(bits):
    with pytest.raises(ConfigError, match=rf"bits={bits!r} is not supported.*1 to 8"):
        QuantGrid(bits)


def test_equations_1_to_5_asymmetric_uint8():
    grid = QuantGrid(8, signed=False, symmetric=False)
    scale, zero_point = compute_qparams(torch.tensor(-1.0), torch.tensor(3.0), grid)
    assert float(scale) == pytest.approx(4.0 / 255)  # eq. 1
    assert float(zero_point) == round(255 - 3.0 / float(scale))  # eq. 2 / 5
    q = quantize(torch.tensor([0.0, 3.0, -1.0]), scale, zero_point, grid)
    assert q.tolist() == [int(zero_point), 255, 0]  # zero is exact; the ends map to the ends
    assert float(dequantize(q, scale, zero_point)[0]) == 0.0


def test_range_is_widened_to_contain_zero():
    grid = QuantGrid(8, signed=False, symmetric=False)
    scale, zero_point = compute_qparams(torch.tensor(2.0), torch.tensor(5.0), grid)
    assert float(zero_point) == 0 and float(scale) == pytest.approx(5.0 / 255)


def test_binary_is_sign_with_l2_optimal_scale():
    x = torch.randn(1000)
    grid = QuantGrid(1)
    scale = binary_scale(x)
    q = quantize(x, scale, torch.zeros(()), grid)
    assert set(q.unique().tolist()) == {-1, 1}
    best = ((dequantize(q, scale, torch.zeros(())) - x) ** 2).sum()
    for factor in (0.9, 1.1):
        assert best < ((q * scale * factor - x) ** 2).sum()
    with pytest.raises(ConfigError, match="binary"):
        compute_qparams(x.min(), x.max(), grid)


def test_fake_quantize_straight_through_gradient_is_clipped():
    grid = QuantGrid(8, signed=False, symmetric=False)
    scale, zero_point = torch.tensor(0.01), torch.tensor(0.0)
    x = torch.tensor([-0.5, 0.3, 1.0, 4.0], requires_grad=True)
    fake_quantize(x, scale, zero_point, grid).sum().backward()
    assert x.grad.tolist() == [0.0, 1.0, 1.0, 0.0]  # inside [0, 2.55] passes, outside is clipped


def test_learnable_scale_receives_lsq_gradient():
    grid = QuantGrid(4, signed=True, symmetric=True)
    scale = torch.tensor(0.1, requires_grad=True)
    x = torch.tensor([0.04, 2.0])  # 0.04/0.1 rounds to 0 (grad -0.4); 2.0 clips at 7 (grad 7)
    fake_quantize(x, scale, torch.zeros(()), grid).sum().backward()
    assert float(scale.grad) == pytest.approx(-0.4 + 7.0)


def test_ternary_threshold_and_scale():
    w = torch.tensor([[1.0, -1.0, 0.1, -0.1]])
    delta, alpha = ternary_threshold(w, axis=0)
    assert float(delta) == pytest.approx(0.7 * 0.55)
    assert float(alpha) == pytest.approx(1.0)  # mean |w| over the two weights above delta
