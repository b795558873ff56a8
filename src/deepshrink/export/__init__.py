"""Deployment export (ONNX via the TorchScript exporter, ncnn via pnnx) and the runtimes that run it."""

import sys
import types

from deepshrink.export.api import FORMATS, export
from deepshrink.export.ncnn_export import NcnnResult, export_ncnn
from deepshrink.export.ncnn_runtime import ncnn_latency_ms, ncnn_net, run_ncnn
from deepshrink.export.onnx_export import INPUT_NAME, OUTPUT_NAME, SPEC_METADATA_KEY, export_onnx
from deepshrink.export.runtime import (
    as_session,
    check_onnx_matches,
    onnx_latency_ms,
    onnx_spec,
    ort_session,
    resolve_threads,
    run_onnx,
    session_threads,
)

__all__ = [
    "FORMATS",
    "INPUT_NAME",
    "NcnnResult",
    "OUTPUT_NAME",
    "SPEC_METADATA_KEY",
    "as_session",
    "check_onnx_matches",
    "export",
    "export_ncnn",
    "export_onnx",
    "ncnn_latency_ms",
    "ncnn_net",
    "onnx_latency_ms",
    "onnx_spec",
    "ort_session",
    "resolve_threads",
    "run_ncnn",
    "run_onnx",
    "session_threads",
]


class _CallableModule(types.ModuleType):
    """`deepshrink.export` names both this package and the root verb. Once the package is imported,
    Python binds the attribute to the module, so the module forwards calls to the `export` verb."""

    def __call__(self, *args, **kwargs):
        return export(*args, **kwargs)


sys.modules[__name__].__class__ = _CallableModule
