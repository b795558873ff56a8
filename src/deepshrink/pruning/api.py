"""`prune`: the structured-pruning verb. Trace -> coupled groups -> scores -> policy -> plan ->
surgery on a copy -> verification -> a new model carrying its replayable plan."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch.nn as nn

from deepshrink.errors import ConfigError
from deepshrink.models.spec import derive
from deepshrink.pruning.config import Iterative, PruneConfig, parse_config
from deepshrink.pruning.graph import DependencyGraph, build_graph
from deepshrink.pruning.importance import Batches, ScoringContext, score_groups
from deepshrink.pruning.measure import count_macs, count_params
from deepshrink.pruning.plan import apply_plan, compose_plans, make_plan
from deepshrink.pruning.budget import BudgetMeter, meet_budget
from deepshrink.pruning.policy import Scores, choose
from deepshrink.pruning.trace import device_of, example_inputs_for
from deepshrink.pruning.verify import verify_surgery

Finetune = Callable[[nn.Module], nn.Module]


@dataclass
class PruneResult:
    model: nn.Module  # the new, physically smaller model (the input model is untouched)
    plan: dict  # JSON plan: kept indices per layer, relative to the input model
    report: dict[str, Any] = field(default_factory=dict)


def prune(model: nn.Module, example_inputs=None, *, criterion: str | None = None, ratio: float | None = None,
          config: PruneConfig | dict | None = None, data: Batches | None = None, finetune: Finetune | None = None,
          objective: Callable | None = None, **options: Any) -> PruneResult:
    """Structured pruning with verified surgery (defaults: criterion "fpgm", ratio 0.5).

    `config` (PruneConfig or dict) holds every option; `criterion`, `ratio` and other keyword
    `options` override its fields. `data` is a few (images, labels) batches for the data-driven
    criteria (taylor, hrank); `objective(model, images, labels) -> (loss, outputs)` replaces
    cross-entropy for taylor (e.g. a detection loss). `finetune(model) -> model` runs after pruning
    (between steps when iterative)."""
    cfg = parse_config(PruneConfig, config, criterion=criterion, ratio=ratio, **options)
    device = device_of(model)
    inputs = tuple(x.to(device) for x in example_inputs_for(model, example_inputs, cfg.advanced.verify_batch))
    if isinstance(cfg.schedule, Iterative):
        return _iterative(model, inputs, cfg, data, finetune, objective)
    result = prune_once(model, inputs, cfg, data, objective)
    if finetune is not None:
        result.model = derive(model, finetune(result.model), "prune", result.plan)
    return result


def graph_for(model: nn.Module, inputs, cfg: PruneConfig) -> DependencyGraph:
    """The dependency graph with the configuration's protected layers pinned."""
    protected = cfg.protect.resolve(model, what="protected layers") if not cfg.protect.is_empty() else set()
    return build_graph(model, inputs, protect=sorted(protected), protect_ends=cfg.protect_ends)


def scores_for(graph: DependencyGraph, cfg: PruneConfig, data: Batches | None,
               objective: Callable | None = None) -> Scores:
    ctx = ScoringContext(graph, calibration=_calibration(data, cfg), seed=cfg.advanced.seed, objective=objective,
                         aggregate=cfg.aggregate.value)
    return score_groups(graph, cfg.criterion, ctx)


def prune_once(model: nn.Module, inputs, cfg: PruneConfig, data: Batches | None,
               objective: Callable | None = None) -> PruneResult:
    graph = graph_for(model, inputs, cfg)
    scores = scores_for(graph, cfg, data, objective)

    def choose_at(ratio: float) -> dict:
        return choose(graph, scores, policy=cfg.policy, ratio=ratio, ratios=dict(cfg.ratios), round_to=cfg.round_to)

    if cfg.budget is None:
        removal = choose_at(cfg.ratio)
    else:
        meter = BudgetMeter(graph, inputs, cfg.budget.metric)
        removal = meet_budget(cfg.budget, meter, choose_at, scores, round_to=cfg.round_to,
                              tolerance=cfg.advanced.budget_tolerance)
    result = finish(model, inputs, graph, make_plan(graph, removal), cfg)
    result.report["unscored"] = sorted(name for name, s in scores.items() if s is None)
    return result


def finish(model: nn.Module, inputs, graph: DependencyGraph, plan: dict, cfg: PruneConfig) -> PruneResult:
    """Apply a plan to a copy, verify it, attach the replayable spec and report."""
    pruned = apply_plan(model, plan)
    error = verify_surgery(model, pruned, plan, inputs, tolerance=cfg.advanced.tolerance) if cfg.verify else None
    pruned = derive(model, pruned, "prune", plan)
    report = {
        "criterion": cfg.criterion,
        # With a budget or per-layer ratios, the ratio is what was done: the fraction of all units removed.
        "ratio": cfg.ratio if cfg.budget is None and not cfg.ratios else _removed_fraction(plan),
        "policy": cfg.policy.value,
        "params": {"before": count_params(model), "after": count_params(pruned)},
        "macs": {"before": count_macs(model, inputs), "after": count_macs(pruned, inputs)},
        "groups": [{"name": g["name"], "units": g["units"], "kept": g["units"] - len(g["removed"])}
                   for g in plan["groups"]],
        "unscored": [],
        "pinned": dict(graph.pinned),
        "verification": None if error is None else {"max_relative_error": error,
                                                    "tolerance": cfg.advanced.tolerance},
    }
    return PruneResult(pruned, plan, report)


def _removed_fraction(plan: dict) -> float:
    units = sum(g["units"] for g in plan["groups"])
    return sum(len(g["removed"]) for g in plan["groups"]) / units if units else 0.0


def _calibration(data: Batches | None, cfg: PruneConfig) -> Batches | None:
    if data is None:
        return None
    batches = []
    for batch in data:
        if not (isinstance(batch, (tuple, list)) and len(batch) == 2):
            raise ConfigError("data must yield (images, labels) batches")
        batches.append((batch[0], batch[1]))
        if len(batches) >= cfg.advanced.calibration_batches:
            break
    return batches


def _iterative(model: nn.Module, inputs, cfg: PruneConfig, data: Batches | None,
               finetune: Finetune | None, objective: Callable | None) -> PruneResult:
    """Reach the kept fraction in equal steps, fine-tuning after each; plans compose into one."""
    if finetune is None:
        raise ConfigError("schedule 'iterative' needs finetune=callable(model) -> model between steps")
    steps = cfg.schedule.steps
    current, plan, reports = model, None, []
    for step in range(1, steps + 1):
        before_kept, after_kept = 1 - cfg.ratio * (step - 1) / steps, 1 - cfg.ratio * step / steps
        overrides: dict[str, Any] = {"schedule": {"kind": "one_shot"},
                                     "ratio": 1 - after_kept / before_kept,
                                     "ratios": {k: 1 - (1 - v * step / steps) / (1 - v * (step - 1) / steps)
                                                for k, v in cfg.ratios.items()}}
        if cfg.budget is not None:
            overrides["budget"] = {"metric": cfg.budget.metric, "keep": cfg.budget.keep ** (1 / steps)}
        step_cfg = parse_config(PruneConfig, cfg.model_dump(), **overrides)
        result = prune_once(current, inputs, step_cfg, data, objective)
        plan = result.plan if plan is None else compose_plans(plan, result.plan)
        reports.append(result.report)
        current = finetune(result.model)
    final = derive(model, current, "prune", plan)
    report = dict(reports[-1], steps=reports)
    report["params"] = {"before": reports[0]["params"]["before"], "after": count_params(final)}
    report["macs"] = {"before": reports[0]["macs"]["before"], "after": count_macs(final, inputs)}
    return PruneResult(final, plan, report)
