"""Latency budgets: build and calibrate the table at the start of a search, and at the end measure
the best candidates whole until one meets the target. Every measurement that misses is added to
the calibration and the table refitted, so the next candidate tried is judged by a better model."""

from __future__ import annotations

from collections.abc import Callable

from deepshrink.nas.search.candidates import Evaluator, rank
from deepshrink.nas.search.evolution import generation_rng, random_genome
from deepshrink.nas.search.latency_table import LatencyTable, measure_model, relative_errors
from deepshrink.nas.search.space import Genome

CALIBRATION_GENERATION = -1  # the random calibration genomes draw from their own seeded generator


def genome_of(record: dict) -> Genome:
    return tuple(int(v) for v in record["key"].split(","))


def build_table(evaluator: Evaluator, input_size: tuple[int, ...], saved: dict | None,
                tick: Callable[[int, int], None] = lambda done, total: None) -> LatencyTable:
    """The table of every layer shape, calibrated on whole models: unpruned, most pruned, uniform
    at the middle ratio and random candidates. A saved table (from the search state) is reused."""
    space, cfg = evaluator.space, evaluator.cfg
    table = LatencyTable(space, cfg.latency, saved)
    if table.calibration["points"]:
        return table
    builds = table.shapes()
    done = iter(range(1, len(builds) + 1))
    table.measure(builds, lambda: tick(next(done), len(builds)))
    rng = generation_rng(cfg.seed, CALIBRATION_GENERATION)
    middle = cfg.ratios[len(cfg.ratios) // 2]
    genomes = [("unpruned", space.unpruned()), ("smallest", space.smallest()),
               (f"uniform-{middle}", space.uniform(middle))]
    genomes += [(f"random-{i}", random_genome(rng, space.levels)) for i in range(cfg.latency.calibration_models - 3)]
    points = [(name, genome, measure_model(evaluator.pruned(genome).model, input_size, cfg.latency))
              for name, genome in genomes[: cfg.latency.calibration_models]]
    table.calibrate(points)
    return table


def baseline_ms(table: LatencyTable) -> float:
    return next(p["measured_ms"] for p in table.calibration["points"] if p["name"] == "unpruned")


def choose_measured(evaluator: Evaluator, input_size: tuple[int, ...]) -> tuple[dict, list[dict]]:
    """Measure the best candidates within the predicted budget, in rank order, until one meets it
    (at most `latency.verify_top` measurements). Returns the chosen record and the checks made."""
    table, latency, metric = evaluator.table, evaluator.cfg.latency, evaluator.metric
    checks: list[dict] = []
    for _ in range(latency.verify_top):
        ranked = [r for r in evaluator.cache.values() if r["feasible"] and "latency_measured" not in r]
        if not ranked:
            break
        record = max(ranked, key=lambda r: rank(r, metric))
        measured = measure_model(evaluator.pruned(genome_of(record)).model, input_size, latency)
        record["latency_measured"] = measured
        checks.append({"key": record["key"], "predicted_ms": record["latency"], "measured_ms": measured})
        if measured <= evaluator.limit:
            return record, checks
        # The table was optimistic here: learn from the measurement before trying the next one.
        points = [(p["name"], tuple(p["genome"]), p["measured_ms"]) for p in table.calibration["points"]]
        table.calibrate([*points, (f"check-{record['key']}", genome_of(record), measured)])
        evaluator.refresh_latency()
    measured_ones = [r for r in evaluator.cache.values() if "latency_measured" in r]
    if not measured_ones:  # nothing predicted within the budget after refitting: try the fastest within the limits
        record = min((r for r in evaluator.cache.values() if evaluator.within_limits(r)), key=lambda r: r["latency"])
        record["latency_measured"] = measure_model(evaluator.pruned(genome_of(record)).model, input_size, latency)
        checks.append({"key": record["key"], "predicted_ms": record["latency"],
                       "measured_ms": record["latency_measured"]})
        measured_ones = [record]
    return min(measured_ones, key=lambda r: r["latency_measured"]), checks


def latency_report(table: LatencyTable, checks: list[dict], base_ms: float, limit: float) -> dict:
    """Table size, calibration, and the error of predictions against whole-model measurements."""
    return {
        "runtime": table.latency.runtime.value, "batch_size": table.latency.batch_size,
        "threads": table.latency.threads, "quantile": table.latency.quantile,
        "table_entries": len(table.entries), "baseline_ms": base_ms, "target_ms": limit,
        "scale": table.calibration["scale"], "offset_ms": table.calibration["offset"],
        "calibration": table.calibration["points"], "fit_error": table.calibration["fit_error"],
        "checks": checks, "check_error": relative_errors(checks),
    }
