"""Shared fixtures. Tests run on CPU with few threads; ones needing ../shared skip without it."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

SHARED = Path(os.environ.get("DEEPSHRINK_SHARED", Path(__file__).resolve().parents[1].parent / "shared"))

# One thread: small test tensors run faster without intra-op sync, and results are reproducible.
torch.set_num_threads(1)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    # The ini timeout guards the default suite against a hang; slow tests train for as long as
    # they need, unless they set their own.
    for item in items:
        if item.get_closest_marker("slow") and not item.get_closest_marker("timeout"):
            item.add_marker(pytest.mark.timeout(0))


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


@pytest.fixture
def rgb_imagefolder(tmp_path: Path):
    """A factory: a tiny class-per-folder set of 32x32 RGB noise images (the CIFAR models take 3
    channels; the embedded digits are grey), returned as its `imagefolder:` data spec."""

    def write(per_class: int = 12, test_per_class: int = 4) -> str:
        import numpy as np
        from PIL import Image

        root, rng = tmp_path / "images", np.random.default_rng(0)
        for split, n in (("train", per_class), ("test", test_per_class)):
            for name in ("a", "b"):
                (root / split / name).mkdir(parents=True)
                for i in range(n):
                    Image.fromarray(rng.integers(0, 255, (32, 32, 3), dtype=np.uint8)).save(root / split / name / f"{i}.png")
        return f"imagefolder:{root}"

    return write
