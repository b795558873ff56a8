"""Each decomposer on single layers: exact at full rank (stride, padding, dilation, bias, padding
modes), error falling with rank, and params/MACs from the rank formulas equal to the measured ones."""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn

from deepshrink.errors import ConfigError, ModelError
from deepshrink.lowrank import CONV_DECOMPOSERS, Advanced, Method, decomposer_for
from deepshrink.lowrank.shapes import trace_shapes
from deepshrink.metrics import count_params, macs
from lowrank_models import relative_error

ADVANCED = Advanced()
METHODS = list(CONV_DECOMPOSERS)

CONVS = {
    "plain": lambda: nn.Conv2d(6, 8, 3, padding=1),
    "stride-dilation-rect": lambda: nn.Conv2d(6, 8, (3, 5), stride=(2, 1), padding=(1, 3), dilation=(1, 2)),
    "no-bias-valid": lambda: nn.Conv2d(5, 7, 3, bias=False),
    "same": lambda: nn.Conv2d(4, 6, (3, 5), padding="same"),
    "circular": lambda: nn.Conv2d(4, 6, 3, padding=1, padding_mode="circular"),
    "reflect-stride": lambda: nn.Conv2d(4, 6, 3, stride=2, padding=1, padding_mode="reflect"),
    "pointwise": lambda: nn.Conv2d(8, 4, 1),
}


def _conv(kind: str) -> tuple[nn.Conv2d, torch.Tensor]:
    torch.manual_seed(0)
    conv = CONVS[kind]()
    return conv, torch.randn(2, conv.in_channels, 11, 13)


@pytest.mark.parametrize("method", METHODS, ids=lambda m: m.value)
@pytest.mark.parametrize("kind", list(CONVS))
def test_full_rank_reproduces_the_convolution(method: Method, kind: str) -> None:
    conv, x = _conv(kind)
    decomposer = decomposer_for("layer", conv, method)
    seq = decomposer.fit(decomposer.max_rank(), ADVANCED)
    with torch.no_grad():
        want, got = conv(x), seq(x)
    assert got.shape == want.shape
    assert relative_error(got, want) < 1e-4
    assert all(isinstance(m, (nn.Conv2d, nn.Linear)) for m in seq)


def test_full_rank_reproduces_a_linear_layer() -> None:
    linear = nn.Linear(20, 7)
    x = torch.randn(3, 5, 20)  # applied at several positions
    for method in Method:  # a linear layer is always factorised by SVD, whatever the conv method
        decomposer = decomposer_for("fc", linear, method)
        assert decomposer.method is Method.SVD
        seq = decomposer.fit((7,), ADVANCED)
        with torch.no_grad():
            assert relative_error(seq(x), linear(x)) < 1e-4


def _ranks_up_to_max(method: Method, conv: nn.Conv2d) -> list[tuple[int, ...]]:
    family = decomposer_for("layer", conv, method).family()
    picks = [family[round(i * (len(family) - 1) / 4)] for i in range(5)]
    return list(dict.fromkeys(picks))


@pytest.mark.parametrize("method", METHODS, ids=lambda m: m.value)
def test_error_falls_as_rank_rises(method: Method) -> None:
    conv, x = _conv("stride-dilation-rect")
    decomposer = decomposer_for("layer", conv, method)
    errors = []
    for rank in _ranks_up_to_max(method, conv):
        with torch.no_grad():
            errors.append(relative_error(decomposer.fit(rank, ADVANCED)(x), conv(x)))
    assert len(errors) >= 4
    assert all(later < earlier for earlier, later in zip(errors, errors[1:])), errors
    assert errors[-1] < 1e-4 < errors[0]


@pytest.mark.parametrize("method", METHODS, ids=lambda m: m.value)
@pytest.mark.parametrize("kind", ["stride-dilation-rect", "no-bias-valid", "reflect-stride"])
def test_params_and_macs_from_ranks_match_the_measured_counts(method: Method, kind: str) -> None:
    conv, x = _conv(kind)
    size = tuple(x.shape[1:])
    decomposer = decomposer_for("layer", conv, method)
    shape = trace_shapes(nn.Sequential(conv), ["0"], size)["0"]
    assert decomposer.original_params() == count_params(conv)
    assert decomposer.original_macs(shape) == macs(conv, size)[0]
    for rank in _ranks_up_to_max(method, conv):
        seq = decomposer.build(rank)
        assert decomposer.params(rank) == count_params(seq), rank
        assert decomposer.macs(rank, shape) == macs(seq, size)[0], rank


def test_linear_params_and_macs_match() -> None:
    linear = nn.Linear(20, 7)
    decomposer = decomposer_for("fc", linear, Method.TUCKER)
    shape = trace_shapes(nn.Sequential(linear), ["0"], (5, 20))["0"]
    assert shape.out_positions == 5
    for rank in [(1,), (3,), (7,)]:
        seq = decomposer.build(rank)
        assert decomposer.params(rank) == count_params(seq)
        assert decomposer.macs(rank, shape) == macs(seq, (5, 20))[0]


@pytest.mark.parametrize(
    ("method", "rank", "allowed"),
    [(Method.TUCKER, (9, 2), "1..[8, 6]"), (Method.CP, (91,), "1..90"), (Method.SVD, (9,), "1..8"), (Method.SPATIAL, (19,), "1..18")],
)
def test_rank_above_the_layer_limit_names_the_layer(method: Method, rank: tuple[int, ...], allowed: str) -> None:
    conv = nn.Conv2d(6, 8, (3, 5))
    with pytest.raises(ConfigError, match=rf"layer 'body\.3' \(Conv2d 6->8, 3x5\): {method.value} rank .* out of range; it allows {allowed}".replace("[", r"\[").replace("]", r"\]")):
        decomposer_for("body.3", conv, method).normalise(rank)


def test_layers_that_cannot_be_decomposed_are_named() -> None:
    with pytest.raises(ModelError, match=r"layer 'bn1' \(BatchNorm2d\) cannot be decomposed: only Conv2d \(groups=1\) and Linear"):
        decomposer_for("bn1", nn.BatchNorm2d(4), Method.TUCKER)
    with pytest.raises(ModelError, match=r"layer 'dw' is a grouped convolution \(groups=4\).*exclude it"):
        decomposer_for("dw", nn.Conv2d(4, 4, 3, groups=4), Method.CP)
    with pytest.raises(ModelError, match=r"layer 'even': padding='same' with an even kernel"):
        decomposer_for("even", nn.Conv2d(4, 4, 2, padding="same"), Method.SPATIAL)
    with pytest.raises(ModelError, match=r"layer 't' \(ConvTranspose2d\) cannot be decomposed"):
        decomposer_for("t", nn.ConvTranspose2d(4, 4, 3), Method.SVD)
