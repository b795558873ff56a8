"""Fixtures for the data tests (writers live in fake_datasets.py)."""

from __future__ import annotations

from pathlib import Path

import pytest
from fake_datasets import write_folder


@pytest.fixture
def tiny_folder(tmp_path: Path) -> Path:
    return write_folder(tmp_path / "tiny")
