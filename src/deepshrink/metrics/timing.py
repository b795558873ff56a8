"""Timing a callable: warm-up, then repeated runs whose count adapts so that one measurement takes
about `budget_s` seconds; reports the median and 90th percentile in milliseconds."""

from __future__ import annotations

import gc
import statistics
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

from deepshrink.errors import ConfigError

MIN_REPEATS = 3
MAX_REPEATS = 200
MAX_WARMUP = 5


@dataclass(frozen=True)
class Timing:
    """Latency of one call in milliseconds."""

    median: float
    p90: float
    repeats: int
    threads: int
    samples: tuple[float, ...] = field(repr=False, default=())

    def to_dict(self) -> dict:
        return {k: v for k, v in asdict(self).items() if k != "samples"}


def time_callable(
    fn: Callable[[], object],
    *,
    threads: int,
    warmup: int | None = None,
    repeats: int | None = None,
    budget_s: float = 1.0,
) -> Timing:
    """Time `fn()`. By default warm up for up to 20 % of the budget (at least one call, at most
    five), then repeat as often as fits in the budget (between 3 and 200 runs)."""
    _check_count("warmup", warmup, minimum=0)
    _check_count("repeats", repeats, minimum=1)
    if budget_s <= 0:
        raise ConfigError(f"budget_s must be positive, got {budget_s!r}")
    gc_was_enabled = gc.isenabled()
    gc.disable()  # a collection inside a timed call is noise, not model latency
    try:
        warm = _warm_up(fn, warmup, budget_s)
        if repeats is None:
            per_call = min(warm) if warm else _run(fn)
            repeats = max(MIN_REPEATS, min(MAX_REPEATS, int(budget_s / max(per_call, 1e-9))))
        samples = [_run(fn) * 1e3 for _ in range(repeats)]
    finally:
        if gc_was_enabled:
            gc.enable()
    ordered = sorted(samples)
    p90 = ordered[min(len(ordered) - 1, round(0.9 * (len(ordered) - 1)))]
    return Timing(statistics.median(samples), p90, repeats, threads, tuple(samples))


def _warm_up(fn: Callable[[], object], warmup: int | None, budget_s: float) -> list[float]:
    if warmup is not None:
        return [_run(fn) for _ in range(warmup)]
    times = [_run(fn)]
    while len(times) < MAX_WARMUP and sum(times) < 0.2 * budget_s:
        times.append(_run(fn))
    return times


def _run(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def _check_count(name: str, value: int | None, *, minimum: int) -> None:
    if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < minimum):
        raise ConfigError(f"{name} must be an integer >= {minimum}, got {value!r}")
