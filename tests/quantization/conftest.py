"""Fixtures for the quantisation tests (single-threaded like every test: see tests/conftest.py)."""

from __future__ import annotations

import pytest

from quant_models import classifier, fit, synthetic_bundle, with_spec


@pytest.fixture(scope="session")
def bundle():
    return synthetic_bundle()


@pytest.fixture(scope="session")
def _trained_state(bundle):
    model = fit(classifier(), bundle)
    return {k: v.clone() for k, v in model.state_dict().items()}


@pytest.fixture
def trained(_trained_state):
    """The Classifier fitted to the synthetic bundle (100 % test accuracy), with a spec."""
    model = with_spec(classifier(), "quant_models:classifier")
    model.load_state_dict(_trained_state)
    return model.eval()


@pytest.fixture
def full_int8_range(monkeypatch):
    """8-bit weights on the full int8 grid whatever this CPU is (tests of nominal bit-widths); the
    default moves them to 7 bits on x86 without VNNI (deepshrink/quantization/cpu.py)."""
    monkeypatch.setattr("deepshrink.quantization.prepare.int8_dot_saturates", lambda: False)
