"""Helpers for the zoo tests."""

from __future__ import annotations

import functools
from collections.abc import Callable

import pytest
import torch
import torch.nn as nn


def calibrate(model: nn.Module, batch: int = 4) -> nn.Module:
    """Set every BatchNorm's running statistics from one random batch, then switch to eval mode.
    Freshly built deep nets have unit running variances, so their eval-mode logits can reach 1e6
    (ResNet-110); calibrated statistics keep activations O(1) and numerical comparisons meaningful."""
    spec = model.deepshrink_spec
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    for norm in norms:
        norm.reset_running_stats()
        norm.momentum = None  # cumulative average: one batch sets the statistics exactly
    model.train()
    with torch.no_grad():
        model(torch.randn(batch, *spec.input_size))
    for norm in norms:
        norm.momentum = 0.1
    return model.eval()


@pytest.fixture
def calibrated() -> Callable[[nn.Module], nn.Module]:
    return calibrate


@pytest.fixture(scope="session")
def zoo_model() -> Callable[[str], nn.Module]:
    """name -> a calibrated eval-mode zoo model, built once per session. Tests must not modify it."""
    from deepshrink.models import create_model

    return functools.cache(lambda name: calibrate(create_model(name)))



