from __future__ import annotations

import json

import pytest

from deepshrink.errors import ConfigError
from deepshrink.metrics import Profile
from deepshrink.metrics.benchmark import machine_info, row_from_profile, versions, write_benchmark


def _profile(params: int, ms: float) -> Profile:
    return Profile(
        params=params, macs=params * 100, bytes=params * 4, bytes_zipped=params * 3,
        latency_ms={"ort_b1": ms, "ort_b64": 20 * ms}, threads=2, input_size=(3, 32, 32),
    )


def _rows() -> list[dict]:
    return [
        row_from_profile("resnet32", _profile(464_154, 2.0), top1=92.5),
        row_from_profile("resnet32-pruned", _profile(232_077, 1.0), top1=91.5, method="l1"),
        row_from_profile("no-accuracy", _profile(100_000, 0.5)),
    ]


def test_json_has_the_schema_and_md_one_line_per_row(tmp_path):
    rows = _rows()
    json_path, md_path = write_benchmark(
        "prune_demo", rows, command="python benchmarks/prune_demo.py", budget={"epochs": 1}, out_dir=tmp_path
    )
    assert (json_path, md_path) == (tmp_path / "prune_demo.json", tmp_path / "prune_demo.md")
    record = json.loads(json_path.read_text())
    assert set(record) == {"command", "machine", "versions", "budget", "rows"}
    assert record["rows"] == rows and record["budget"] == {"epochs": 1}
    assert {"name", "top1", "params", "macs", "bytes", "latency_ms"} <= set(record["rows"][0])
    table = [line for line in md_path.read_text().splitlines() if line.startswith("|")]
    assert len(table) == 2 + len(rows)  # header, rule, one line per row
    header = [c.strip() for c in table[0].strip("|").split("|")]
    assert header[:3] == ["name", "top1 %", "Δtop1"] and "ort_b64 ×" in header and "method" in header
    pruned = dict(zip(header, (c.strip() for c in table[3].strip("|").split("|"))))
    assert pruned["Δtop1"] == "-1.00" and pruned["ort_b64 ×"] == "2.00×" and pruned["bytes ×"] == "2.00×"
    assert pruned["params"] == "232.08K" and pruned["method"] == "l1"
    missing = dict(zip(header, (c.strip() for c in table[4].strip("|").split("|"))))
    assert missing["top1 %"] == "–" and missing["ort_b1 ×"] == "4.00×"


def test_notes_are_kept(tmp_path):
    json_path, md_path = write_benchmark(
        "n", _rows()[:1], command="x", budget="1 min", out_dir=tmp_path, notes="CPU only."
    )
    assert json.loads(json_path.read_text())["notes"] == "CPU only."
    assert md_path.read_text().rstrip().endswith("CPU only.")


def test_machine_and_versions_describe_this_process():
    machine = machine_info()
    assert machine["cores"] >= 1 and machine["torch_threads"] >= 1 and machine["cpu"] and machine["os"]
    assert machine["simd"] and isinstance(machine["int8_vnni"], bool)  # int8 results depend on it
    found = versions()
    assert set(found) == {"python", "torch", "onnxruntime", "onnx", "numpy", "deepshrink"}
    assert found["torch"].startswith("2.") and found["deepshrink"] == "0.1.0"


@pytest.mark.parametrize(
    ("name", "rows", "message"),
    [
        ("../escape", [{"name": "a"}], "plain file name"),
        ("ok", [], "non-empty list"),
        ("ok", [{"top1": 1.0}], "row 0 must be a dict with a non-empty 'name'"),
        ("ok", [{"name": "a", "latency_ms": 3.0}], "row 0 \\('a'\\): latency_ms must be a dict"),
    ],
)
def test_bad_input_is_a_config_error(tmp_path, name, rows, message):
    with pytest.raises(ConfigError, match=message):
        write_benchmark(name, rows, command="x", budget=None, out_dir=tmp_path)


def test_accuracy_plots_are_written_and_linked_when_two_rows_have_top1(tmp_path):
    _, md_path = write_benchmark("plotted", _rows(), command="x", budget={}, out_dir=tmp_path)
    text = md_path.read_text()
    for name in ("plotted_size.png", "plotted_latency.png"):
        assert (tmp_path / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and f"({name})" in text
    write_benchmark("single", _rows()[:1], command="x", budget={}, out_dir=tmp_path)
    assert not list(tmp_path.glob("single*.png")) and "![" not in (tmp_path / "single.md").read_text()
