from __future__ import annotations

import json

import pytest

import deepshrink
from deepshrink.errors import ConfigError
from deepshrink.metrics import Profile, count_params, macs, model_bytes, profile


def test_profile_gathers_every_measurement(tiny):
    result = profile(tiny, batch_sizes=(1, 4), threads=1)
    assert isinstance(result, Profile)
    total, per_layer = macs(tiny)
    sizes = model_bytes(tiny)
    assert (result.params, result.macs, result.macs_per_layer) == (count_params(tiny), total, per_layer)
    assert (result.bytes, result.bytes_zipped) == (sizes["fp32"], sizes["zipped"])
    assert set(result.latency_ms) == {"eager_b1", "eager_b4", "ort_b1", "ort_b4"}
    assert all(v > 0 for v in result.latency_ms.values())
    assert result.threads == 1 and result.input_size == (3, 8, 8)
    data = json.loads(json.dumps(result.to_dict()))
    assert data["latency_ms"] == result.latency_ms and data["input_size"] == [3, 8, 8]


def test_profile_without_latency_and_explicit_size(tiny):
    result = profile(tiny, (3, 16, 16), runtimes=())
    assert result.latency_ms == {} and result.macs == macs(tiny, (3, 16, 16))[0]
    assert result.macs > macs(tiny)[0]


def test_root_verb_is_metrics_profile():
    assert deepshrink.profile is profile


def test_profile_rejects_repeats_and_unknown_runtimes(tiny):
    with pytest.raises(ConfigError, match="must not repeat"):
        profile(tiny, batch_sizes=(1, 1), runtimes=())
    with pytest.raises(ConfigError, match="unknown runtime 'onnx'"):
        profile(tiny, runtimes=("onnx",))
