from __future__ import annotations

import math

import pytest

from deepshrink.errors import BudgetError, ConfigError
from deepshrink.quantization import mixed_precision
from deepshrink.quantization.mixed import allocate_bits
from quant_models import normalized


def test_allocation_spends_bits_where_they_matter():
    sensitivity = {"robust": {8: 0.0, 4: 0.001, 2: 0.002}, "fragile": {8: 0.0, 4: 0.5, 2: 5.0}}
    numels = {"robust": 1000, "fragile": 1000}
    assert allocate_bits(sensitivity, numels, 2000) == {"robust": 8, "fragile": 8}
    assert allocate_bits(sensitivity, numels, 1500) == {"robust": 4, "fragile": 8}
    assert allocate_bits(sensitivity, numels, 1000) == {"robust": 2, "fragile": 4}
    with pytest.raises(BudgetError, match="size budget 400 bytes cannot be met.*needs 500 bytes"):
        allocate_bits(sensitivity, numels, 400)


def test_mixed_precision_meets_the_budget_and_keeps_accuracy(trained, bundle):
    x, y = normalized(bundle.test)
    result = mixed_precision(trained, x[:128], budget=0.15, candidates=(8, 4, 2))
    report = result.report
    numels = {"conv1": 12 * 27, "conv2": 16 * 108, "fc": 4 * 16}
    assert report["weight_bytes"] <= report["budget_bytes"] == int(0.15 * 4 * sum(numels.values()))
    assert sum(math.ceil(numels[n] * b / 8) for n, b in report["layer_bits"].items()) == report["weight_bytes"]
    assert len(set(report["layer_bits"].values())) > 1  # a real mix
    assert set(report["sensitivity"]) == set(numels)
    assert (result.model(x).argmax(1) == y).float().mean() >= 0.95


def test_budget_must_be_a_fraction(trained, bundle):
    x, _ = normalized(bundle.test)
    with pytest.raises(ConfigError, match="budget: a fraction of the FP32 weight bytes"):
        mixed_precision(trained, x[:8], budget=2.0)
