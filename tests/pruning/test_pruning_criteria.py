"""Importance criteria on models whose answer is known by construction, the registry, and the
errors of the data-driven criteria."""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn
from pruning_models import calibration

from deepshrink.errors import ConfigError, UnknownNameError
from deepshrink.pruning import CRITERIA, build_graph, prune
from deepshrink.pruning.importance import ScoringContext, score_groups


def _net(norm: bool = True) -> nn.Sequential:
    """conv(3->8) [-> BN] -> ReLU -> global pool -> linear: one prunable group of 8 units."""
    torch.manual_seed(0)
    layers = [nn.Conv2d(3, 8, 3, bias=False)]
    layers += [nn.BatchNorm2d(8)] if norm else []
    layers += [nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 10)]
    return nn.Sequential(*layers).eval()


def _removed(model, x, criterion, ratio=0.5, **kw) -> list[int]:
    result = prune(model, x, criterion=criterion, ratio=ratio, round_to=1, protect_ends=False, **kw)
    (group,) = [g for g in result.plan["groups"] if g["name"] == "0"]
    return group["removed"]


@pytest.mark.parametrize("criterion", ["l1", "l2"])
def test_norm_criteria_remove_the_smallest_filters(criterion: str, x32) -> None:
    model = _net()
    with torch.no_grad():
        model[0].weight[[1, 4, 6, 7]] *= 1e-3
    assert _removed(model, x32, criterion) == [1, 4, 6, 7]


@pytest.mark.parametrize("criterion", ["l1", "l2"])
def test_group_aggregate_also_scores_what_the_consumers_read(criterion: str, x32) -> None:
    model = _net()
    with torch.no_grad():
        model[0].weight.copy_(torch.ones_like(model[0].weight))
        model[0].weight[[0, 1, 2, 3]] *= 2.0  # larger filters, but the classifier ignores them
        model[5].weight[:, [0, 1, 2, 3]] = 0.0
    assert _removed(model, x32, criterion) == [4, 5, 6, 7]  # producers: the paper's definition
    assert _removed(model, x32, criterion, aggregate="group") == [0, 1, 2, 3]


def test_fpgm_removes_filters_at_the_geometric_median_not_the_smallest(x32) -> None:
    model = _net()
    centre = torch.full((3, 3, 3), 10.0)
    filters = [centre.clone() for _ in range(8)]
    for i, (axis, sign) in enumerate([(0, 1), (0, -1), (1, 1), (1, -1), (2, 1), (2, -1)]):
        filters[i][axis, 0, 0] += sign  # six filters around the centre; 6 and 7 are the centre
    with torch.no_grad():
        model[0].weight.copy_(torch.stack(filters))
    assert _removed(model, x32, "fpgm", ratio=0.25) == [6, 7]
    assert _removed(model, x32, "l1", ratio=0.25) != [6, 7]  # the smallest norms are elsewhere


def test_bn_scale_uses_gammas_and_abstains_without_norms(x32) -> None:
    model = _net()
    with torch.no_grad():
        model[1].weight[[1, 3, 5, 7]] = 0.01
    assert _removed(model, x32, "bn_scale") == [1, 3, 5, 7]
    result = prune(_net(norm=False), x32, criterion="bn_scale", round_to=1, protect_ends=False)
    assert result.report["unscored"] == ["0"] and result.plan["layers"] == {}


def test_taylor_equals_the_first_order_estimate(x32) -> None:
    model = _net(norm=False)
    batches = calibration(2)
    graph = build_graph(model, x32)
    scores = score_groups(graph, "taylor", ScoringContext(graph, calibration=batches))["0"]
    expected = torch.zeros(8)
    for images, labels in batches:
        model.zero_grad()
        nn.functional.cross_entropy(model(images), labels).backward()
        expected += (model[0].weight * model[0].weight.grad).flatten(1).sum(1).detach().pow(2)
    assert torch.allclose(scores, expected / 2, rtol=1e-4)


def test_hrank_removes_low_rank_feature_maps(x32) -> None:
    model = nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 10))
    with torch.no_grad():
        model[0].weight[[0, 2, 4, 6]] = 0.0  # constant maps (bias only): rank 1
        model[0].bias.fill_(0.5)
    assert _removed(model.eval(), x32, "hrank", data=calibration(1)) == [0, 2, 4, 6]


@pytest.mark.parametrize("criterion", ["taylor", "hrank"])
def test_data_driven_criteria_need_data(criterion: str, x32) -> None:
    with pytest.raises(ConfigError, match=f"criterion '{criterion}' needs calibration data"):
        prune(_net(), x32, criterion=criterion)


def test_random_is_seeded(x32) -> None:
    a = _removed(_net(), x32, "random", advanced={"seed": 1})
    assert a == _removed(_net(), x32, "random", advanced={"seed": 1})
    assert len(a) == 4


def test_users_can_register_a_criterion(x32) -> None:
    name = "test_prefers_high_index"
    if name not in CRITERIA:
        CRITERIA.register(name)(lambda group, ctx: torch.arange(group.size, dtype=torch.float32))
    assert _removed(_net(), x32, name) == [0, 1, 2, 3]


def test_unknown_criterion_lists_close_matches(x32) -> None:
    with pytest.raises(UnknownNameError, match=r"unknown importance criterion 'l3' \(did you mean: l2, l1\?\)"):
        prune(_net(), x32, criterion="l3")


def test_taylor_needs_an_objective_for_models_without_logits(x32) -> None:
    model = nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU(), nn.Conv2d(8, 4, 1)).eval()
    with pytest.raises(ConfigError, match=r"Sequential does not return class logits \[N, classes\] \(got \(4, 4, 30, 30\)\)"):
        prune(model, x32, criterion="taylor", protect_ends=False, round_to=1, data=calibration(1))
    energy = lambda m, images, labels: (m(images).pow(2).mean(), None)  # noqa: E731
    result = prune(model, x32, criterion="taylor", protect_ends=False, round_to=1, data=calibration(1),
                   objective=energy)
    assert result.model[0].out_channels == 4
