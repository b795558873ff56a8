"""Seed 001 eq. 7 (interpretable weight allocation) and the alpha sweep of its Table 2."""

from __future__ import annotations

import copy

import pytest
import torch

from deepshrink.distillation import (
    DistillConfig,
    KDWeights,
    WeightMode,
    allocate_weights,
    distill,
    eq7_weights,
    plot_sweep,
    sweep_alpha,
)
from deepshrink.errors import ConfigError


def test_eq7_reproduces_the_papers_worked_example():
    # DenseNet teacher improved the probe by 3.41 points, the ResNet side by 1.46: alpha 0.29..0.30, beta 0.70..0.71
    weights, rule = eq7_weights(3.41, 1.46, KDWeights())
    assert weights.beta == pytest.approx(3.41 / 4.87) and weights.alpha == pytest.approx(1.46 / 4.87)
    assert weights.alpha + weights.beta == pytest.approx(1.0) and rule == "eq. 7"


def test_eq7_counts_a_harmful_source_as_zero_and_falls_back_when_neither_helps():
    weights, rule = eq7_weights(2.0, -1.0, KDWeights())
    assert (weights.alpha, weights.beta) == (0.0, 1.0) and "negative improvement counted as 0" in rule
    weights, rule = eq7_weights(-0.5, 1.5, KDWeights())
    assert (weights.alpha, weights.beta) == (1.0, 0.0)
    fallback = KDWeights(alpha=0.2, beta=0.8)
    weights, rule = eq7_weights(-0.5, 0.0, fallback)
    assert weights == fallback and rule.startswith("neither source improved the probe (I_A=-0.500, I_B=0.000)")


def test_allocate_weights_measures_both_improvements_on_one_probe(digits, make, teacher, fast):
    second = make(8).eval()  # B: an untrained network is a poor source
    config = DistillConfig(auto={"epochs": 1, "probe_weights": {"alpha": 0.1, "beta": 0.9}}, train=fast)
    allocation = allocate_weights(teacher, second, digits, config, template=make(4))
    assert allocation.improvement_teacher == pytest.approx(allocation.teacher_top1 - allocation.baseline_top1)
    assert allocation.improvement_second == pytest.approx(allocation.second_top1 - allocation.baseline_top1)
    expected, rule = eq7_weights(allocation.improvement_teacher, allocation.improvement_second, KDWeights())
    assert allocation.weights == expected and allocation.rule == rule and allocation.split == "val"
    assert allocation.as_dict()["weights"] == expected.model_dump()
    assert allocation.teacher_top1 > allocation.second_top1  # the trained teacher is the better source


def test_distill_with_auto_weights_resolves_them_first(digits, make, teacher, fast):
    config = DistillConfig(weights="auto", auto={"epochs": 1}, train={**fast, "epochs": 1})
    result = distill(make(4), teacher, digits, config)
    assert config.weights is WeightMode.AUTO and result.allocation is not None
    assert result.config.weights == result.allocation.weights
    assert result.summary()["config"]["weights"] == result.allocation.weights.model_dump()


def test_sweep_alpha_one_is_plain_training_and_leaves_the_student_alone(digits, make, teacher, fast, tmp_path):
    from deepshrink.metrics import evaluate
    from deepshrink.training import train

    student = make(4)
    original = copy.deepcopy(student.state_dict())
    points = sweep_alpha(student, teacher, digits, DistillConfig(train=fast), alphas=(1.0, 0.3))
    assert [(p.alpha, p.beta) for p in points] == [(1.0, 0.0), (0.3, 0.7)]
    assert all(torch.equal(original[k], v) for k, v in student.state_dict().items())
    plain = train(copy.deepcopy(student), digits, fast).model  # alpha = 1, beta = 0 is eq. 2: CE alone
    assert points[0].top1 == pytest.approx(evaluate(plain, digits)["top1"])
    path = plot_sweep(points, tmp_path / "sweep.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_sweep_rejects_alphas_outside_the_unit_interval(digits, make, teacher):
    with pytest.raises(ConfigError, match=r"alphas: 1.5 is outside \[0, 1\]"):
        sweep_alpha(make(4), teacher, digits, alphas=(1.0, 1.5))
    with pytest.raises(ConfigError, match="plot_sweep: no sweep points"):
        plot_sweep([], "unused.png")
