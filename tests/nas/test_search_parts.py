"""The search's parts alone: the cost model against the pruned models it predicts, the search
space's levels, the evolution operators, BatchNorm recalibration and the Pareto front."""

from __future__ import annotations

import random

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from deepshrink.metrics import model_bytes
from deepshrink.models import create_model
from deepshrink.nas.search import SearchConfig, recalibrate_bn
from deepshrink.nas.search.config import EvolutionConfig
from deepshrink.nas.search.evolution import (generation_rng, initial_population, mutate, next_generation, repair,
                                             tournament)
from deepshrink.nas.search.pareto import pareto_front
from deepshrink.nas.search.space import build_space
from deepshrink.pruning import prune


class Mixed(nn.Module):
    """Depthwise, pointwise and aligned grouped convolutions, GroupNorm and a flatten into linear."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 16, 3, padding=1)
        self.bn1 = nn.BatchNorm2d(16)
        self.dw = nn.Conv2d(16, 16, 3, padding=1, groups=16)
        self.bn2 = nn.BatchNorm2d(16)
        self.pw = nn.Conv2d(16, 32, 1)
        self.gn = nn.GroupNorm(4, 32)
        self.grouped = nn.Conv2d(32, 32, 3, padding=1, groups=4)
        self.bn3 = nn.BatchNorm2d(32)
        self.last = nn.Conv2d(32, 24, 3, stride=2, padding=1)
        self.fc = nn.Linear(24 * 4, 5)

    def forward(self, x):
        x = F.relu(self.bn1(self.stem(x)))
        x = F.relu(self.bn2(self.dw(x)))
        x = F.relu(self.bn3(self.grouped(self.gn(self.pw(x)))))
        return self.fc(F.adaptive_avg_pool2d(self.last(x), 2).flatten(1))


@pytest.mark.parametrize("name, size, protect_ends", [("resnet20", 16, True), ("mixed", 12, False)])
def test_cost_model_predicts_the_pruned_model_exactly(name, size, protect_ends) -> None:
    model = Mixed() if name == "mixed" else create_model("resnet20")
    x = torch.randn(2, 3, size, size, generator=torch.Generator().manual_seed(0))
    cfg = SearchConfig(ratios=(0.0, 0.25, 0.5, 0.75), round_to=2, protect_ends=protect_ends)
    space = build_space(model, (x,), cfg)
    assert len(space.genes) >= 3 and all(len(g.kept) == 4 for g in space.genes)
    rng = random.Random(0)
    for _ in range(4):
        genome = tuple(rng.randrange(n) for n in space.levels)
        pruned = prune(model, (x,), config=cfg.prune_config(space.ratios(genome)))  # verified surgery
        assert space.predict("macs", genome) == pruned.report["macs"]["after"]
        assert space.predict("params", genome) == pruned.report["params"]["after"]
        # Stored bytes: exact up to the header, which writes each tensor's shape and offsets as text.
        tensors = len(pruned.model.state_dict())
        assert abs(space.predict("bytes", genome) - model_bytes(pruned.model)["fp32"]) <= 8 * tensors


def test_levels_merge_ratios_that_round_to_the_same_width() -> None:
    model, x = create_model("resnet20"), torch.randn(2, 3, 16, 16)
    space = build_space(model, (x,), SearchConfig(ratios=(0.0, 0.1, 0.2, 0.3, 0.4, 0.5), round_to=8))
    stage1 = next(g for g in space.genes if g.group == "layer1.0.conv1")
    stage3 = next(g for g in space.genes if g.group == "layer3.0.conv1")
    assert (stage1.kept, stage1.ratios) == ((16, 8), (0.0, 0.3))  # 16 channels: 0.1 and 0.2 keep all 16
    assert stage3.kept == (64, 56, 48, 40, 32) and stage3.ratios == (0.0, 0.1, 0.2, 0.4, 0.5)  # 0.3 keeps 48
    assert space.ratios(space.smallest())["layer1.0.conv1"] == 0.3


def test_evolution_operators() -> None:
    levels = [4, 3, 1, 5]
    rng, same = generation_rng(7, 3), generation_rng(7, 3)
    assert [same.random() for _ in range(3)] == [rng.random() for _ in range(3)]
    assert generation_rng(7, 4).random() != generation_rng(7, 3).random()
    for _ in range(50):
        child = mutate((0, 2, 0, 4), rng, levels, rate=0.5)
        assert all(0 <= v < n for v, n in zip(child, levels)) and child[2] == 0
    cost = lambda genome: 100 - 10 * sum(genome)  # noqa: E731  (pruning more costs less)
    fixed = repair((0, 0, 0, 0), rng, levels, cost, limit=45)
    assert cost(fixed) <= 45 and cost(fixed) > 35  # stops at the first level within budget
    assert repair((0, 0, 0, 0), rng, levels, cost, limit=9) is None  # every gene at its last level costs 10
    population = initial_population(rng, levels, 6, [(1, 1, 0, 2)], lambda g: repair(g, rng, levels, cost, 60))
    assert population[0] == (1, 1, 0, 2) and len(set(population)) == 6
    assert all(cost(g) <= 60 for g in population)
    score = {g: -sum(g) for g in population}
    best = max(population, key=score.get)
    wins = [tournament(population, score.get, rng, size=3) for _ in range(300)]
    assert set(wins) <= set(population)
    assert 0.3 < wins.count(best) / 300 < 0.55  # 1 - (5/6)^3 = 0.42 for a tournament of 3 among 6
    children = next_generation(population, score.get, rng, levels, EvolutionConfig(elite=2),
                               lambda g: repair(g, rng, levels, cost, 60))
    assert children[:2] == sorted(population, key=score.get, reverse=True)[:2] and len(children) == 6


def test_recalibrated_batchnorm_holds_the_exact_batch_statistics() -> None:
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4))
    batches = [(torch.randn(8, 3, 6, 6) * 3 + 1, torch.zeros(8)) for _ in range(3)]
    recalibrate_bn(model, batches)
    with torch.no_grad():
        features = torch.cat([model[0](x) for x, _ in batches])
    torch.testing.assert_close(model[1].running_mean, features.mean(dim=(0, 2, 3)))
    assert not model.training and model[1].momentum == 0.1  # restored


def test_pareto_front() -> None:
    points = [{"key": k, "macs": m, "top1": t} for k, m, t in
              [("a", 10, 50), ("b", 20, 60), ("c", 20, 55), ("d", 30, 58), ("e", 40, 70), ("f", 5, 50)]]
    assert [p["key"] for p in pareto_front(points, "macs")] == ["f", "b", "e"]
