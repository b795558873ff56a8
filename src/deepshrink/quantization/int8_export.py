"""Write a fake-quant model as an ONNX QDQ graph that ONNX Runtime runs with int8 kernels.

The graph is exported by `deepshrink.export.export_onnx` from `to_deploy(model)`, so every scale
and zero point is the one the fake-quant model used (no re-calibration by a second tool), then
compacted: Identity nodes the exporter adds for shared constants are removed and internal tensor
names shortened, since names are a visible share of a small int8 file."""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

import onnx
import torch.nn as nn

from deepshrink.errors import ExportError
from deepshrink.export import export_onnx
from deepshrink.fileio import atomic_write_bytes
from deepshrink.quantization.deploy import to_deploy

INT8_KERNELS = ("QLinearConv", "QLinearAdd", "QGemm", "QLinearMatMul", "MatMulIntegerToFloat", "ConvInteger")


def export_int8_onnx(model: nn.Module, path: str | os.PathLike, input_size: Sequence[int] | None = None, *, opset: int = 17) -> Path:
    """Export the quantised `model` (from `deepshrink.quantize`) to `path` in QDQ form."""
    if opset < 13:
        raise ExportError(f"int8 export needs opset >= 13 (per-channel DequantizeLinear), got {opset}")
    path = export_onnx(to_deploy(model), path, input_size, opset=opset)
    graph = compact(onnx.load(str(path)))
    try:
        onnx.checker.check_model(graph)
    except Exception as exc:
        raise ExportError(f"compacted int8 graph fails onnx.checker: {exc}") from None
    return atomic_write_bytes(path, graph.SerializeToString())


def compact(model: onnx.ModelProto) -> onnx.ModelProto:
    """Drop Identity nodes and doc strings, and rename internal tensors t0, t1, ... (graph
    inputs and outputs keep their names)."""
    graph = model.graph
    keep_names = {v.name for v in graph.input} | {v.name for v in graph.output}
    alias: dict[str, str] = {}
    for node in list(graph.node):
        if node.op_type == "Identity" and node.output[0] not in keep_names:
            alias[node.output[0]] = node.input[0]
            graph.node.remove(node)
    rename: dict[str, str] = {}

    def short(name: str) -> str:
        while name in alias:
            name = alias[name]
        if not name or name in keep_names:
            return name
        return rename.setdefault(name, f"t{len(rename)}")

    for init in graph.initializer:
        init.name = short(init.name)
        init.doc_string = ""
    for node in graph.node:
        node.input[:] = [short(n) for n in node.input]
        node.output[:] = [short(n) for n in node.output]
        node.name = ""
        node.doc_string = ""
    for info in graph.value_info:
        info.name = short(info.name)
    model.doc_string = ""
    graph.doc_string = ""
    return model


def optimized_op_counts(path: str | os.PathLike, optimized_path: str | os.PathLike) -> Counter:
    """Op types of the graph ONNX Runtime actually runs (after its QDQ fusions), saved to
    `optimized_path`: shows whether convolutions became QLinearConv int8 kernels."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
    options.optimized_model_filepath = str(optimized_path)
    options.log_severity_level = 3
    ort.InferenceSession(str(path), sess_options=options, providers=["CPUExecutionProvider"])
    return Counter(node.op_type for node in onnx.load(str(optimized_path)).graph.node)


def int8_kernel_share(counts: Counter) -> float:
    """Fraction of conv/gemm/matmul nodes that run as int8 kernels."""
    int8 = sum(counts[k] for k in INT8_KERNELS)
    floating = sum(counts[k] for k in ("Conv", "FusedConv", "Gemm", "MatMul", "FusedGemm"))
    return int8 / max(int8 + floating, 1)
