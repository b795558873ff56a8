"""Every benchmark result committed under docs/benchmarks keeps the one schema tools compare runs
by, and has its Markdown twin for people."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from deepshrink.metrics.benchmark import _check_rows

DOCS = Path(__file__).resolve().parents[2] / "docs" / "benchmarks"
RESULTS = sorted(DOCS.rglob("*.json")) if DOCS.is_dir() else []


@pytest.mark.skipif(not RESULTS, reason="no docs/benchmarks in this checkout")
@pytest.mark.parametrize("path", RESULTS, ids=lambda p: str(p.relative_to(DOCS)))
def test_committed_result_has_the_schema_and_a_markdown_twin(path):
    record = json.loads(path.read_text())
    assert {"command", "machine", "versions", "budget", "rows"} <= set(record), path
    assert isinstance(record["command"], str) and record["command"].startswith("python "), path
    _check_rows(record["rows"])  # names and latency dicts, as the writer requires
    assert {"cpu", "cores_available", "torch_threads"} <= set(record["machine"]), path
    twin = path.with_suffix(".md")
    assert twin.is_file(), f"{path} has no {twin.name}"
    assert record["command"] in twin.read_text()
