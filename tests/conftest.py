"""Shared fixtures. Tests run on CPU with few threads; ones needing ../shared skip without it."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

SHARED = Path(os.environ.get("DEEPSHRINK_SHARED", Path(__file__).resolve().parents[1].parent / "shared"))

# One thread: small test tensors run faster without intra-op sync, and results are reproducible.
torch.set_num_threads(1)


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    if not SHARED.is_dir():
        pytest.skip(f"shared data not found at {SHARED}")
    return SHARED


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


@pytest.fixture(autouse=True)
def _one_thread():
    """Every test starts and ends on one thread, whatever code under test set (the engine and the
    latency measurements change it); on a 2-core machine a second thread mostly waits."""
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(1)
