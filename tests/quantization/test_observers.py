from __future__ import annotations

import pytest
import torch

from deepshrink.quantization import OBSERVERS, Advanced
from deepshrink.quantization.primitives import QuantGrid, fake_quantize

GRID = QuantGrid(8, signed=False, symmetric=False)


def _observe(name: str, batches: list[torch.Tensor], grid: QuantGrid = GRID, **options):
    observer = OBSERVERS.get(name)(grid, Advanced(**options))
    for pass_index in range(observer.passes):
        for batch in batches:
            observer.update(batch, pass_index)
    return observer


def _heavy_tailed(n: int = 20000) -> torch.Tensor:
    """Laplace(0, 1) samples (max |x| about 10) plus two outliers at +-50."""
    torch.manual_seed(0)
    x = torch.distributions.Laplace(0.0, 1.0).sample((n,))
    x[:2] = torch.tensor([50.0, -50.0])
    return x


@pytest.mark.parametrize("name", OBSERVERS.names())
def test_every_observer_gives_a_valid_range_covering_the_bulk(name):
    x = _heavy_tailed()
    lo, hi = _observe(name, list(x.split(5000))).range()
    assert float(lo) <= -2.5 and float(hi) >= 2.5  # keeps at least the central ~92 %
    assert float(lo) >= float(x.min()) - 1e-4 and float(hi) <= float(x.max()) + 1e-4


def test_minmax_is_exact_and_moving_average_is_damped():
    batches = [torch.tensor([0.0, 1.0]), torch.tensor([0.0, 11.0])]
    assert float(_observe("minmax", batches).range()[1]) == 11.0
    assert float(_observe("moving_average", batches, averaging_constant=0.1).range()[1]) == pytest.approx(2.0)


@pytest.mark.parametrize("name, bits", [("percentile", 8), ("kl", 8), ("mse", 4)])
def test_clipping_observers_cut_outliers(name, bits):
    grid = QuantGrid(bits, signed=False, symmetric=False)
    lo, hi = _observe(name, [_heavy_tailed()], grid, percentile=99.9).range()
    assert 2.5 < float(hi) < 10 and -10 < float(lo) < -2.5


def test_mse_observer_beats_minmax_on_its_own_objective():
    x, grid = _heavy_tailed(), QuantGrid(4, signed=False, symmetric=False)

    def mse(name: str) -> float:
        scale, zero_point = _observe(name, [x], grid).qparams()
        return float(((fake_quantize(x, scale, zero_point, grid) - x) ** 2).mean())

    assert mse("mse") < 0.25 * mse("minmax")
    assert mse("mse") <= min(mse("percentile"), mse("kl")) * 1.01


def test_percentile_keeps_the_requested_mass():
    x = torch.rand(100000) * 10
    lo, hi = _observe("percentile", [x], percentile=99.0).range()
    assert float(lo) == pytest.approx(0.0, abs=0.02)  # non-negative data: the lower end stays at the minimum
    assert float(hi) == pytest.approx(9.95, abs=0.03)


def test_observer_registry_rejects_unknown_names():
    with pytest.raises(Exception, match="unknown observer 'mxe'.*did you mean: mse"):
        OBSERVERS.get("mxe")
