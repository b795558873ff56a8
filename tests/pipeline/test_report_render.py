"""The report's deployment table and machine line are flattened for people, not dumped dicts."""

from deepshrink.report.render import deploy_rows, machine_line


def test_deploy_rows_flatten_one_row_per_metric():
    deploy = {"export": {"onnx_int8": {"path": "final/model.int8.onnx", "bytes": 270120},
                         "ncnn": {"max_abs_diff": 5.5e-05, "top1": 88.29}}}
    assert deploy_rows(deploy) == [
        ["export: onnx_int8", "path", "final/model.int8.onnx"],
        ["export: onnx_int8", "bytes", "270,120"],
        ["export: ncnn", "max_abs_diff", "5.5e-05"],
        ["export: ncnn", "top1", "88.29"],
    ]


def test_machine_line_names_cpu_threads_and_versions():
    report = {"machine": {"cpu": "AMD EPYC", "cores_available": 2, "torch_threads": 1, "os": "Linux"},
              "versions": {"torch": "2.13.0+cpu", "onnxruntime": None}}
    assert machine_line(report) == "AMD EPYC, 2 cores, 1 torch threads, Linux, torch 2.13.0+cpu"


def test_compare_tabulates_each_run_by_its_own_score(tmp_path, capsys) -> None:
    import json

    from deepshrink.cli.main import main

    stage = {"name": "4-quantize", "params": 1000, "macs": 2000, "bytes": 300, "latency_ms": {"ort_b1": 0.5}}
    runs = {"cls": {"stages": [{**stage, "top1": 88.0}]}, "det": {"score": "map50", "stages": [{**stage, "map50": 40.0}]}}
    for name, report in runs.items():
        (tmp_path / name).mkdir()
        (tmp_path / name / "report.json").write_text(json.dumps(report))
    assert main(["compare", str(tmp_path / "cls"), str(tmp_path / "det")]) == 0
    out = capsys.readouterr().out  # a rich table: cells may wrap, so look for the words
    assert all(word in out for word in ("top1", "88.00", "map50", "40.00"))
