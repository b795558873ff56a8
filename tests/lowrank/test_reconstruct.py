"""Refitting the last factor of each decomposed layer to the original outputs (lowrank.reconstruct)."""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn

from deepshrink.errors import ConfigError, ModelError
from deepshrink.lowrank import decompose
from deepshrink.lowrank.reconstruct import decomposed_layer_names, reconstruct_
from lowrank_models import relative_error


@pytest.mark.parametrize("method", ["tucker", "cp", "spatial"])
def test_refit_never_loses_and_brings_the_outputs_closer(tiny: nn.Module, method: str) -> None:
    torch.manual_seed(0)
    student = decompose(tiny, method=method, ratio=3, advanced={"cp_iterations": 20})
    fit, held_out = torch.randn(64, 3, 16, 16), torch.randn(32, 3, 16, 16)
    with torch.no_grad():
        before = relative_error(student(held_out), tiny(held_out))
    report = reconstruct_(student, tiny, fit)
    names = decomposed_layer_names(student)
    grouped = [n for n in names if isinstance(student.get_submodule(n)[-1], nn.Conv2d) and student.get_submodule(n)[-1].groups > 1]
    assert set(report) == set(names) - set(grouped) and "hidden" in report  # linears (SVD) too
    assert all(r["error_after"] <= r["error_before"] for r in report.values())
    assert sum(r["error_after"] for r in report.values()) < 0.9 * sum(r["error_before"] for r in report.values())
    with torch.no_grad():
        assert relative_error(student(held_out), tiny(held_out)) < before


def test_an_exact_decomposition_stays_exact(tiny: nn.Module) -> None:
    student = decompose(tiny, method="svd", ranks={"hidden": 24}, exclude=[])  # full rank: exact
    report = reconstruct_(student, tiny, torch.randn(16, 3, 16, 16))
    assert report["hidden"]["error_before"] < 1e-5 and report["hidden"]["error_after"] < 1e-5


def test_bad_input_is_named(tiny: nn.Module) -> None:
    with pytest.raises(ModelError, match="carries no decomposition plan"):
        reconstruct_(tiny, tiny, torch.randn(4, 3, 16, 16))
    student = decompose(tiny, method="tucker", ratio=2)
    with pytest.raises(ConfigError, match=r"images must be a non-empty batch, got shape \(0, 3, 16, 16\)"):
        reconstruct_(student, tiny, torch.randn(0, 3, 16, 16))
    with pytest.raises(ModelError, match="layer 'stem' is not a decomposed sequence"):
        reconstruct_(student, tiny, torch.randn(4, 3, 16, 16), names=["stem"])
