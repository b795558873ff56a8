from __future__ import annotations

import time

import pytest

from deepshrink.errors import ConfigError
from deepshrink.metrics import Timing, latency_ms, time_callable
from deepshrink.metrics.timing import MAX_REPEATS, MIN_REPEATS


@pytest.mark.parametrize("runtime", ["eager", "ort"])
def test_latency_is_positive_and_records_threads(tiny, runtime):
    timing = latency_ms(tiny, batch=2, runtime=runtime, threads=1, warmup=1, repeats=4)
    assert isinstance(timing, Timing)
    assert 0 < timing.median <= timing.p90 <= max(timing.samples)
    assert (timing.threads, timing.repeats, len(timing.samples)) == (1, 4, 4)


def test_eager_latency_restores_train_mode(tiny):
    tiny.train()
    latency_ms(tiny, (3, 8, 8), 1, threads=1, warmup=0, repeats=3)
    assert all(m.training for m in tiny.modules())


def test_timer_measures_what_the_call_costs():
    timing = time_callable(lambda: time.sleep(0.003), threads=1, warmup=1, repeats=5)
    assert 3.0 <= timing.median < 50.0
    assert timing.to_dict() == {"median": timing.median, "p90": timing.p90, "repeats": 5, "threads": 1}


def test_adaptive_repeats_fit_the_budget():
    fast = time_callable(lambda: None, threads=1, budget_s=0.05)
    assert fast.repeats == MAX_REPEATS
    slow = time_callable(lambda: time.sleep(0.02), threads=1, budget_s=0.1)
    assert MIN_REPEATS <= slow.repeats <= 5  # about 0.1 s / 20 ms


def test_bad_options_are_config_errors(tiny):
    with pytest.raises(ConfigError, match="unknown runtime 'tensorrt'; choose one of: eager, ort"):
        latency_ms(tiny, runtime="tensorrt")
    with pytest.raises(ConfigError, match="repeats must be an integer >= 1"):
        latency_ms(tiny, repeats=0)
    with pytest.raises(ConfigError, match="batch must be a positive integer"):
        latency_ms(tiny, batch=0)
