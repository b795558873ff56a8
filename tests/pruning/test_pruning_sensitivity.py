"""Sensitivity analysis: per-group accuracy-vs-ratio curves, the plot, and proposed ratios that
the pruning config accepts."""

from __future__ import annotations

import pytest
import torch
from pruning_models import TinyResNetA

from deepshrink.errors import ConfigError
from deepshrink.pruning import plot_sensitivity, propose_ratios, prune, sensitivity, validation_score


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
