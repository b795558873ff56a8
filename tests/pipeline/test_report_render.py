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
