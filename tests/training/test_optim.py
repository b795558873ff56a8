"""Optimiser groups and the per-step learning-rate curves."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn as nn

from deepshrink.training import TrainConfig, build_optimizer, build_scheduler
from deepshrink.training.optim import WARMUP_START

STEPS = 5  # optimiser steps per epoch in these tests


def _curve(config: TrainConfig) -> list[float]:
    """The lr used at every step of a run, read from a real optimiser + scheduler."""
    model = nn.Linear(2, 2)
    optimizer = build_optimizer([model], config)
    scheduler = build_scheduler(optimizer, config, STEPS)
    lrs = []
    for _ in range(config.epochs * STEPS):
        lrs.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    return lrs


def test_cosine_with_linear_warmup_ends_near_zero():
    lrs = _curve(TrainConfig(epochs=10, lr=0.1, warmup_epochs=2))
    warm = lrs[: 2 * STEPS + 1]
    assert warm[0] == pytest.approx(0.1 * WARMUP_START)
    assert max(abs(b - a - (warm[1] - warm[0])) for a, b in zip(warm, warm[1:])) < 1e-12  # linear
    assert lrs[2 * STEPS] == pytest.approx(0.1)  # peak right after warm-up
    assert all(b < a for a, b in zip(lrs[2 * STEPS :], lrs[2 * STEPS + 1 :]))  # then decreasing
    assert lrs[-1] < 1e-3 * 0.1 * 10  # last step is within 1 % of zero
    mid = 2 * STEPS + (len(lrs) - 2 * STEPS) // 2
    assert lrs[mid] == pytest.approx(0.05, rel=1e-9)  # half-way through the cosine: half the peak


def test_step_schedule_drops_by_gamma_at_milestones():
    lrs = _curve(TrainConfig(epochs=6, lr=0.1, schedule="step", milestones=[2, 4], gamma=0.1))
    expected = [0.1] * 2 * STEPS + [0.01] * 2 * STEPS + [0.001] * 2 * STEPS
    assert lrs == pytest.approx(expected, rel=1e-12)


def test_constant_schedule_with_warmup():
    lrs = _curve(TrainConfig(epochs=3, lr=0.2, schedule="constant", warmup_epochs=1))
    assert lrs[0] == pytest.approx(0.2 * WARMUP_START) and lrs[STEPS - 1] < 0.2
    assert lrs[STEPS:] == pytest.approx([0.2] * 2 * STEPS)


def test_onecycle_matches_torch_onecycle():
    config = TrainConfig(epochs=8, lr=0.3, schedule="onecycle", momentum=0.0, weight_decay=0.0)
    lrs = _curve(config)
    optimizer = torch.optim.SGD(nn.Linear(2, 2).parameters(), lr=0.3)
    reference = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=0.3, total_steps=8 * STEPS, cycle_momentum=False)
    expected = []
    for _ in range(8 * STEPS):
        expected.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        if len(expected) < 8 * STEPS:
            reference.step()
    assert lrs == pytest.approx(expected, abs=1e-12)
    assert max(lrs) == pytest.approx(0.3, rel=1e-3) and lrs[-1] < 0.3 / 1e4


def test_no_weight_decay_on_norm_and_bias():
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.Flatten(), nn.Linear(4, 2))
    groups = build_optimizer([model], TrainConfig()).param_groups
    assert [g["weight_decay"] for g in groups] == [5e-4, 0.0]
    assert [tuple(p.shape) for p in groups[0]["params"]] == [(4, 3, 3, 3), (2, 4)]
    assert len(groups[1]["params"]) == 4  # conv bias, BN weight, BN bias, linear bias
    everything = build_optimizer([model], TrainConfig(decay_norm_and_bias=True)).param_groups
    assert len(everything) == 1 and len(everything[0]["params"]) == 6


def test_shared_and_frozen_params_counted_once_and_adamw_betas():
    model = nn.Linear(3, 3)
    frozen = nn.Linear(3, 3).requires_grad_(False)
    optimizer = build_optimizer([model, frozen, model], TrainConfig(optimizer="adamw", momentum=0.8))
    assert isinstance(optimizer, torch.optim.AdamW)
    assert sum(len(g["params"]) for g in optimizer.param_groups) == 2
    assert optimizer.param_groups[0]["betas"] == (0.8, 0.999)
    assert optimizer.param_groups[0]["weight_decay"] == 0.05


def test_nesterov_sgd():
    optimizer = build_optimizer([nn.Linear(2, 2)], TrainConfig(nesterov=True))
    assert optimizer.param_groups[0]["nesterov"] is True and math.isclose(optimizer.param_groups[0]["momentum"], 0.9)
