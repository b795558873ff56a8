"""Sensitivity analysis: per-group accuracy-vs-ratio curves, the plot, and proposed ratios that
the pruning config accepts."""

from __future__ import annotations

import json

import pytest
import torch
from pruning_models import TinyResNetA

from deepshrink.errors import BudgetError, ConfigError
from deepshrink.pruning import (
    Sensitivity,
    allocate_ratios,
    plot_sensitivity,
    propose_ratios,
    prune,
    sensitivity,
    validation_score,
)
from deepshrink.pruning.sensitivity import predicted_drop


def _agreement(reference: torch.nn.Module, x: torch.Tensor):
    """Score = 100 - relative output change vs the unpruned model, in percent."""
    with torch.no_grad():
        expected = reference.eval()(x)

    def score(model: torch.nn.Module) -> float:
        with torch.no_grad():
            out = model.eval()(x)
        return 100.0 - 100.0 * float((out - expected).norm() / expected.norm())

    return score


def test_curves_plot_and_proposal(tmp_path, x32) -> None:
    model = TinyResNetA(1).eval()
    result = sensitivity(model, _agreement(model, x32), x32, ratios=(0.25, 0.5, 0.75), protect_ends=False)
    assert result.baseline == 100.0
    assert set(result.curves) == {"conv1", "layer1.0.conv1", "layer2.0.conv1", "layer2.0.conv2",
                                  "layer3.0.conv1", "layer3.0.conv2"}
    for curve in result.curves.values():
        assert curve[0] >= curve[-1] and curve[-1] < 100.0  # more pruning, more damage
    path = plot_sensitivity(result, tmp_path / "sens.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    strict, loose = propose_ratios(result, max_drop=0.0), propose_ratios(result, max_drop=100.0)
    assert all(v == 0.0 for v in strict.values()) and all(v == 0.75 for v in loose.values())
    middle = propose_ratios(result, max_drop=float(sorted(c[1] for c in result.curves.values())[2]))
    pruned = prune(model, x32, ratios=middle, round_to=1, protect_ends=False)  # keys are group names
    kept = {g["name"]: g["kept"] / g["units"] for g in pruned.report["groups"]}
    assert all(kept[name] == pytest.approx(1 - ratio) for name, ratio in middle.items())


def test_validation_score_reads_the_val_split(tiny_data) -> None:
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3), torch.nn.ReLU(), torch.nn.AdaptiveAvgPool2d(1),
                                torch.nn.Flatten(), torch.nn.Linear(8, 4))
    score = validation_score(tiny_data, limit_batches=1)
    assert 0.0 <= score(model) <= 100.0


def test_bad_ratios_are_an_error(x32) -> None:
    model = TinyResNetA(1)
    with pytest.raises(ConfigError, match=r"sensitivity ratios must lie in \(0, 1\)"):
        sensitivity(model, lambda m: 0.0, x32, ratios=(0.5, 1.0))


def _synthetic(model, x, flat: set[str]) -> Sensitivity:
    """Curves without measuring: the `flat` groups lose nothing, the others 10 points per 0.25."""
    groups = sensitivity(model, lambda m: 0.0, x, ratios=(0.5,), protect_ends=False).curves
    curves = {name: [90.0, 90.0, 90.0] if name in flat else [80.0, 70.0, 60.0] for name in groups}
    return Sensitivity(baseline=90.0, ratios=[0.25, 0.5, 0.75], curves=curves)


def test_allocation_meets_the_budget_pruning_the_insensitive_groups_first(x32) -> None:
    model = TinyResNetA(1).eval()
    flat = {"layer2.0.conv1", "layer3.0.conv1"}
    result = _synthetic(model, x32, flat)
    light = allocate_ratios(model, result, {"keep": 0.7}, x32, protect_ends=False)
    assert set(light) == set(result.curves)
    assert all(light[name] == 0.0 for name in set(light) - flat) and any(light[name] > 0 for name in flat)
    ratios = allocate_ratios(model, result, {"keep": 0.5}, x32, protect_ends=False)
    assert all(ratios[name] == 0.75 for name in flat)  # free: taken up to the largest measured ratio first
    assert any(ratios[name] > 0 for name in set(ratios) - flat)
    for keep, chosen in ((0.7, light), (0.5, ratios)):
        pruned = prune(model, x32, ratio=0.0, ratios=chosen, protect_ends=False)
        kept = {g["name"]: g["kept"] / g["units"] for g in pruned.report["groups"]}
        assert all(kept[name] == pytest.approx(1 - ratio) for name, ratio in chosen.items())  # the same rounding
        assert pruned.report["macs"]["after"] / pruned.report["macs"]["before"] <= keep


def test_allocation_errors(x32) -> None:
    model = TinyResNetA(1).eval()
    result = _synthetic(model, x32, set())
    with pytest.raises(BudgetError, match=r"cannot reach 0.010 of the original macs within the measured ratios"):
        allocate_ratios(model, result, {"keep": 0.01}, x32, protect_ends=False)
    with pytest.raises(ConfigError, match="no prunable group of this model has a sensitivity curve"):
        allocate_ratios(model, Sensitivity(baseline=1.0, ratios=[0.5], curves={"nowhere": [0.0]}), {"keep": 0.5}, x32)


def test_predicted_drop_interpolates_and_ignores_noise() -> None:
    result = Sensitivity(baseline=90.0, ratios=[0.25, 0.5, 0.75], curves={"g": [91.0, 86.0, 87.0]})
    assert predicted_drop(result, "g", 0.0) == 0.0
    assert predicted_drop(result, "g", 0.25) == 0.0  # above the baseline: no loss, not a gain
    assert predicted_drop(result, "g", 0.375) == pytest.approx(2.0)
    assert predicted_drop(result, "g", 0.75) == pytest.approx(4.0)  # the recovery at 0.75 is noise


def test_interrupted_analysis_resumes_from_its_state(tmp_path, x32) -> None:
    model = TinyResNetA(1).eval()
    state = tmp_path / "sensitivity.json"
    scorer = _agreement(model, x32)
    calls = []

    def flaky(m: torch.nn.Module) -> float:
        calls.append(1)
        if len(calls) == 1 + 2 * 2 + 1:  # baseline, two groups of two ratios, then dies in the third group
            raise KeyboardInterrupt
        return scorer(m)

    options = {"ratios": (0.25, 0.5), "protect_ends": False, "state": state, "state_key": {"data": "x32"}}
    with pytest.raises(KeyboardInterrupt):
        sensitivity(model, flaky, x32, **options)
    assert len(json.loads(state.read_text())["curves"]) == 2
    calls.clear()
    resumed = sensitivity(model, lambda m: calls.append(1) or scorer(m), x32, **options)
    fresh = sensitivity(model, scorer, x32, ratios=(0.25, 0.5), protect_ends=False)
    assert len(calls) == 2 * (len(fresh.curves) - 2)  # only the groups not saved, and no new baseline
    assert resumed.curves == fresh.curves and resumed.baseline == fresh.baseline  # JSON keeps floats exact
    calls.clear()
    sensitivity(model, lambda m: calls.append(1) or scorer(m), x32, **{**options, "state_key": {"data": "other"}})
    assert len(calls) == 1 + 2 * len(fresh.curves)  # other settings: measured afresh
