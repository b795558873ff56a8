"""`search`: evolutionary search of per-group pruning ratios under a budget.

Space (levels per group, read off `prune`) -> for latency, a per-layer table calibrated on whole
models -> a check that the budget is reachable -> seeded population (the best uniform ratio within
budget plus repaired random genomes) -> generations of tournament selection, crossover, mutation,
repair and elitism, every candidate scored by the proxy and cached, the state saved atomically
after each generation -> the best candidate within budget (for latency: the best that measures
within the target) pruned with verification, BatchNorm recalibrated, optionally fine-tuned."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch.nn as nn

from deepshrink.errors import BudgetError
from deepshrink.fileio import write_json
from deepshrink.metrics.evaluation import resolve_data
from deepshrink.nas.search import latency_check
from deepshrink.nas.search.candidates import SLACK, Evaluator, rank, ranker
from deepshrink.nas.search.config import Metric, SearchConfig
from deepshrink.nas.search.evolution import generation_rng, initial_population, next_generation, repair
from deepshrink.nas.search.pareto import pareto_front, plot_pareto
from deepshrink.nas.search.progress import SearchProgress
from deepshrink.nas.search.proxy import proxy_batches, recalibrate_bn
from deepshrink.nas.search.space import build_space
from deepshrink.nas.search.state import SearchState, load_state, model_fingerprint, save_state
from deepshrink.pruning import PruneConfig

UNITS = {"macs": "MACs", "params": "parameters", "bytes": "bytes", "latency": "ms"}


@dataclass
class SearchResult:
    plan: dict[str, float]  # group -> ratio: PruneConfig(ratios=plan), see prune_config()
    candidates: list[dict]  # every candidate evaluated: ratios, macs, params, bytes, [latency], top1, loss
    pareto: list[dict]  # non-dominated candidates (proxy top-1 vs the budget's metric)
    chosen: dict
    model: nn.Module  # the chosen plan applied with verified surgery (fine-tuned when asked)
    config: SearchConfig
    budget: dict[str, Any]  # metric, keep, baseline value, limit
    history: list[dict] = field(default_factory=list)  # per generation
    latency: dict | None = None  # table, calibration and prediction errors (latency budgets)
    finetune_history: list[dict] = field(default_factory=list)
    out_dir: Path | None = None  # where the state, plan.json, candidates.json and pareto.png are

    def prune_config(self) -> PruneConfig:
        return self.config.prune_config(self.plan)

    @property
    def unpruned(self) -> dict:
        """The unpruned model's record (every search evaluates it, as the plot's reference)."""
        return next(c for c in self.candidates if not c["ratios"])


def search(model: nn.Module, data: Any, config: SearchConfig | dict | None = None, *,
           out_dir: str | os.PathLike | None = None, resume: bool = True,
           on_generation: Callable[[SearchState], None] | None = None, **overrides: Any) -> SearchResult:
    """Search per-group pruning ratios of `model` on `data` (a DataBundle or data spec) under
    `config.budget`. With `out_dir`, the state is saved there after every generation (a later call
    with `resume=True` continues from it) and plan.json, candidates.json and pareto.png are written.
    `on_generation(state)` is called after each generation is saved."""
    cfg = SearchConfig.coerce(config, **overrides)
    bundle = resolve_data(data)
    out = Path(out_dir) if out_dir is not None else None
    calibration, val = proxy_batches(bundle, cfg.proxy, cfg.seed)
    inputs = (calibration[0][0][:2],)
    input_size = tuple(bundle.input_size)
    space = build_space(model, inputs, cfg, calibration)
    fingerprint = {"config": cfg.fingerprint(), "model": model_fingerprint(space.genes, space.base),
                   "data": {"name": bundle.name, "train": len(bundle.train.labels), "val": len(bundle.val.labels)}}
    state = (load_state(out, fingerprint) if out is not None and resume else None) or SearchState(fingerprint)
    evaluator = Evaluator(model, inputs, space, cfg, calibration, val, state.cache)
    metric = cfg.budget.metric.value

    with SearchProgress(cfg.progress, cfg.generations) as progress:
        if cfg.budget.metric is Metric.LATENCY:
            evaluator.table = latency_check.build_table(evaluator, input_size, state.latency, progress.table)
            state.latency = evaluator.table.to_dict()
            base = latency_check.baseline_ms(evaluator.table)
        else:
            base = space.base[metric]
        evaluator.limit = cfg.budget.keep * base
        evaluator.limits = {limit.metric.value: limit.keep * space.base[limit.metric.value] for limit in cfg.limits}
        _check_reachable(evaluator, base)
        _evolve(evaluator, state, out, progress, on_generation)

    if cfg.budget.metric is Metric.LATENCY:
        chosen, checks = latency_check.choose_measured(evaluator, input_size)
        chosen["meets_target"] = chosen["latency_measured"] <= evaluator.limit
        report = latency_check.latency_report(evaluator.table, checks, base, evaluator.limit)
    else:
        chosen = max(state.cache.values(), key=lambda r: rank(r, metric))
        chosen["meets_target"], report = bool(chosen["feasible"]), None
    return _finish(evaluator, state, chosen, base, report, bundle, out)


def _check_reachable(evaluator: Evaluator, base: float) -> None:
    """BudgetError, saying what is reachable, when even the most pruned candidate is over budget."""
    space, cfg, metric = evaluator.space, evaluator.cfg, evaluator.metric
    smallest = space.smallest()
    if cfg.budget.metric is Metric.LATENCY:
        point = next(p for p in evaluator.table.calibration["points"] if p["name"] == "smallest")
        reached, detail = min(evaluator.cost(smallest), point["measured_ms"]), (
            f" (measured {point['measured_ms']:.3f} ms, unpruned {base:.3f} ms, on {cfg.latency.runtime.value} "
            f"at batch {cfg.latency.batch_size} with {cfg.latency.threads} thread(s))")
    else:
        reached, detail = evaluator(smallest, 0)[metric], ""
    for name, limit in evaluator.limits.items():
        least = space.predict(name, smallest)
        if least > limit * (1 + SLACK):
            raise BudgetError(
                f"no candidate meets the limit {name} <= {limit:,.4g} {UNITS[name]}: the smallest any candidate "
                f"reaches is {least:,.4g} ({least / space.base[name]:.3f} of the unpruned model), with every "
                f"prunable group at ratio {max(cfg.ratios)}")
    if reached <= evaluator.limit:
        return
    unit = UNITS[metric]
    raise BudgetError(
        f"no candidate meets the budget {cfg.budget.describe()}, i.e. at most {evaluator.limit:,.4g} {unit}: "
        f"the smallest {unit} any candidate reaches is {reached:,.4g} ({reached / base:.3f} of the unpruned "
        f"{base:,.4g}){detail}, with every prunable group at ratio {max(cfg.ratios)} (round_to {cfg.round_to}; "
        f"protected layers keep their channels). Ask for keep >= {reached / base:.3f}"
        f"{' (at most ' + format(base / reached, '.2f') + 'x)' if reached > 0 else ''}, or allow larger ratios."
    )


def _evolve(evaluator: Evaluator, state: SearchState, out: Path | None, progress: SearchProgress,
            on_generation: Callable[[SearchState], None] | None) -> None:
    space, cfg, metric = evaluator.space, evaluator.cfg, evaluator.metric
    levels = space.levels

    def evaluated(population: list, generation: int) -> None:
        progress.start_generation(generation, len(population))
        for genome in population:
            evaluator(genome, generation)
            progress.advance(_best(evaluator, metric))
        state.population, state.generation = population, generation
        state.history.append(_generation_record(evaluator, population, generation))
        if out is not None:
            save_state(out, state)
        if on_generation is not None:
            on_generation(state)

    if state.generation < 0:
        rng = generation_rng(cfg.seed, 0)
        evaluator(space.unpruned(), 0)  # the reference point of the plot
        uniform = next((g for g in (space.uniform(r) for r in cfg.ratios) if evaluator.excess(g) <= 1.0), None)
        fix = _fixer(evaluator, rng, levels)
        evaluated(initial_population(rng, levels, cfg.population, [] if uniform is None else [uniform], fix), 0)
    for generation in range(state.generation + 1, cfg.generations + 1):
        rng = generation_rng(cfg.seed, generation)
        population = next_generation(state.population, ranker(lambda g: evaluator(g, generation), metric), rng,
                                     levels, cfg.evolution, _fixer(evaluator, rng, levels))
        evaluated(population, generation)


def _fixer(evaluator: Evaluator, rng, levels):
    return lambda genome: repair(genome, rng, levels, evaluator.excess, 1.0)


def _best(evaluator: Evaluator, metric: str) -> dict | None:
    feasible = [r for r in evaluator.cache.values() if r["feasible"]]
    return max(feasible, key=lambda r: rank(r, metric)) if feasible else None


def _generation_record(evaluator: Evaluator, population: list, generation: int) -> dict:
    best = _best(evaluator, evaluator.metric)
    return {"generation": generation, "evaluated": len(evaluator.cache),
            "best_top1": None if best is None else best["top1"], "best_key": None if best is None else best["key"],
            "best": None if best is None else best[evaluator.metric]}


def _finish(evaluator: Evaluator, state: SearchState, chosen: dict, base: float, latency: dict | None, bundle,
            out: Path | None) -> SearchResult:
    cfg, metric = evaluator.cfg, evaluator.metric
    genome = latency_check.genome_of(chosen)
    final = evaluator.pruned(genome, verify=True)  # raises VerificationError if the surgery is wrong
    model = recalibrate_bn(final.model, evaluator.calibration)
    history: list[dict] = []
    if cfg.finetune is not None and cfg.finetune.epochs > 0:
        from deepshrink.training import train

        trained = train(model, bundle, cfg.finetune, out_dir=None if out is None else out / "finetune",
                        resume=out is not None)
        model, history = trained.model.to("cpu").eval(), trained.history
    candidates = list(state.cache.values())
    front = pareto_front(candidates, metric)
    budget = {"metric": metric, "keep": cfg.budget.keep, "baseline": base, "limit": evaluator.limit,
              "limits": dict(evaluator.limits)}
    result = SearchResult(evaluator.space.ratios(genome), candidates, front, chosen, model, cfg, budget,
                          state.history, latency, history, out)
    if out is not None:
        write_outputs(result, out)
    return result


def write_outputs(result: SearchResult, out: Path) -> None:
    """plan.json (PruneConfig fields: `deepshrink prune --config plan.json` replays it), candidates.json
    and pareto.png."""
    metric = result.budget["metric"]
    write_json(out / "plan.json", result.prune_config().model_dump(mode="json"))
    write_json(out / "candidates.json", {
        "budget": result.budget, "chosen": result.chosen["key"], "pareto": [c["key"] for c in result.pareto],
        "history": result.history, "latency": result.latency, "finetune": result.finetune_history,
        "candidates": result.candidates,
    })
    plot_pareto(result.candidates, result.pareto, result.chosen, metric, result.budget["limit"], out / "pareto.png",
                title=f"Search: {result.config.budget.describe()}")
