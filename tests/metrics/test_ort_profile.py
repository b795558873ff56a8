"""Per-node ONNX Runtime times: every kernel is reported, the totals add up, nothing is left on disk."""

from __future__ import annotations

import json
import os

import pytest

from deepshrink.cli.main import main
from deepshrink.errors import ExportError
from deepshrink.export import export_onnx
from deepshrink.metrics.ort_profile import op_totals, ort_node_times


def test_every_convolution_gets_a_time_and_totals_add_up(tiny, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # the profiler must not leave its JSON in the working directory
    path = export_onnx(tiny, tmp_path / "tiny.onnx")
    times = ort_node_times(path, batch=4, runs=3, warmup=1)
    convs = [node for node in times if node.op == "Conv"]
    assert len(convs) == 5  # stem + two blocks x two convs (BatchNorm folded by the exporter)
    assert all(node.ms > 0 for node in times)
    assert {(4, 3, 8, 8)} <= {shape for node in convs for shape in node.input_shapes}
    totals = op_totals(times)
    assert totals["Conv"] == pytest.approx(sum(node.ms for node in convs))
    assert list(totals.values()) == sorted(totals.values(), reverse=True)
    assert os.listdir(tmp_path) == ["tiny.onnx"]


def test_bad_arguments_are_named(tiny, tmp_path):
    with pytest.raises(ExportError, match="missing.onnx: ONNX file not found"):
        ort_node_times(tmp_path / "missing.onnx")
    path = export_onnx(tiny, tmp_path / "tiny.onnx")
    with pytest.raises(ExportError, match="runs must be >= 1"):
        ort_node_times(path, runs=0)


def test_cli_profile_lists_the_slowest_nodes(tmp_path):
    out = tmp_path / "p.json"
    code = main(["profile", "--model", "digits_cnn", "--runtimes", "ort", "--batch-sizes", "1,8", "--ort-nodes", "2",
                 "--json", str(out)])
    assert code == 0
    nodes = json.loads(out.read_text())["ort_nodes"]
    assert nodes["batch"] == 8 and len(nodes["slowest"]) == 2
    assert "Conv" in nodes["op_ms"] and nodes["slowest"][0]["ms"] >= nodes["slowest"][1]["ms"]
