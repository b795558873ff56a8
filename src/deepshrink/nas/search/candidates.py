"""Evaluating a candidate: prune a copy with its ratios (surgery verification off: the chosen one is
verified at the end), measure its size exactly, predict its latency from the table, and score it
with the accuracy proxy. Records are plain JSON so the cache survives in the search state."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
import torch.nn as nn

from deepshrink.metrics import model_bytes
from deepshrink.nas.search.config import Metric, SearchConfig
from deepshrink.nas.search.latency_table import LatencyTable
from deepshrink.nas.search.proxy import Batch, recalibrate_bn, score
from deepshrink.nas.search.space import Genome, SearchSpace
from deepshrink.nas.search.state import genome_key
from deepshrink.pruning import PruneResult, prune

# Feasibility compares floats (predicted latency, budget fractions): allow rounding noise only.
SLACK = 1e-9


class Evaluator:
    def __init__(self, model: nn.Module, inputs: tuple[torch.Tensor, ...], space: SearchSpace, cfg: SearchConfig,
                 calibration: Sequence[Batch], val: Sequence[Batch], cache: dict[str, dict]) -> None:
        self.model, self.inputs, self.space, self.cfg = model, inputs, space, cfg
        self.calibration, self.val, self.cache = calibration, val, cache
        self.metric = cfg.budget.metric.value
        self.table: LatencyTable | None = None
        self.limit = float("inf")
        self.limits: dict[str, float] = {}  # metric -> the most a candidate may have (SearchConfig.limits)

    def pruned(self, genome: Genome, *, verify: bool = False) -> PruneResult:
        config = self.cfg.prune_config(self.space.ratios(genome), verify=verify)
        return prune(self.model, self.inputs, config=config, data=self.calibration)

    def cost(self, genome: Genome) -> float:
        """The budget metric as the search sees it before pruning (exact for MACs and parameters)."""
        if self.cfg.budget.metric is Metric.LATENCY:
            return self.table.predict(genome)
        return self.space.predict(self.metric, genome)

    def excess(self, genome: Genome) -> float:
        """The largest of cost / limit over the budget and every further limit: <= 1 is within all."""
        ratios = [self.space.predict(metric, genome) / limit for metric, limit in self.limits.items()]
        return max([self.cost(genome) / self.limit, *ratios])

    def within_limits(self, record: dict) -> bool:
        return all(record[metric] <= limit * (1 + SLACK) for metric, limit in self.limits.items())

    def __call__(self, genome: Genome, generation: int) -> dict:
        key = genome_key(genome)
        if key in self.cache:
            return self.cache[key]
        result = self.pruned(genome)
        model = result.model
        record = {
            "key": key, "generation": generation, "ratios": self.space.ratios(genome),
            "macs": float(result.report["macs"]["after"]), "params": float(result.report["params"]["after"]),
            "bytes": float(model_bytes(model)["fp32"]),
        }
        if self.table is not None:
            record["latency"] = self.table.predict(genome)
        record["top1"], record["loss"] = score(recalibrate_bn(model, self.calibration), self.val)
        record["feasible"] = record[self.metric] <= self.limit * (1 + SLACK) and self.within_limits(record)
        self.cache[key] = record
        return record

    def refresh_latency(self) -> None:
        """Re-predict every cached candidate after the table's calibration changed."""
        for key, record in self.cache.items():
            record["latency"] = self.table.predict(tuple(int(v) for v in key.split(",")))
            record["feasible"] = record["latency"] <= self.limit * (1 + SLACK) and self.within_limits(record)


def rank(record: dict, metric: str) -> tuple:
    """Within budget first, then proxy top-1, then lower proxy loss, then lower cost."""
    return (record["feasible"], record["top1"], -record["loss"], -record[metric])


def ranker(evaluate: Callable[[Genome], dict], metric: str) -> Callable[[Genome], tuple]:
    return lambda genome: rank(evaluate(genome), metric)
