"""Fixtures for the quantisation tests (single-threaded like every test: see tests/conftest.py)."""

from __future__ import annotations

import pytest
import torch

from quant_models import classifier, fit, synthetic_bundle, with_spec


@pytest.fixture(scope="session")
def bundle():
    return synthetic_bundle()


@pytest.fixture(scope="session")
def _trained_state(bundle):
    threads = torch.get_num_threads()  # session fixtures run outside the autouse one
    torch.set_num_threads(1)
    try:
        model = fit(classifier(), bundle)
    finally:
        torch.set_num_threads(threads)
    return {k: v.clone() for k, v in model.state_dict().items()}


@pytest.fixture
def trained(_trained_state):
    """The Classifier fitted to the synthetic bundle (100 % test accuracy), with a spec."""
    model = with_spec(classifier(), "quant_models:classifier")
    model.load_state_dict(_trained_state)
    return model.eval()
