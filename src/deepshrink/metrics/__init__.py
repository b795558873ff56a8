"""Measurement: accuracy, parameters, MACs per layer, stored bytes and latency (eager and ONNX
Runtime), plus the shared benchmark writer."""

from deepshrink.metrics.counting import count_params, macs
from deepshrink.metrics.evaluation import evaluate, evaluate_onnx
from deepshrink.metrics.latency import Runtime, latency_ms
from deepshrink.metrics.profiling import Profile, profile
from deepshrink.metrics.size import file_bytes, model_bytes
from deepshrink.metrics.timing import Timing, time_callable

__all__ = [
    "Profile",
    "Runtime",
    "Timing",
    "count_params",
    "evaluate",
    "evaluate_onnx",
    "file_bytes",
    "latency_ms",
    "macs",
    "model_bytes",
    "profile",
    "time_callable",
]
