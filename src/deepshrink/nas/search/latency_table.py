"""Latency of a candidate on ONNX Runtime, predicted from a per-layer table.

Each convolution (and linear layer) is timed once per shape it can take in the search space, as a
one-node ONNX graph (Conv or Gemm with a bias, since BatchNorm folds into it on export) run by the
same runtime, batch size and thread count as the deployed model. A candidate's raw prediction is
the sum over its layers. The sum misses what the single nodes do not show (activations, additions,
pooling, per-call overhead) and what fusion saves, so it is calibrated against whole models
exported and measured end to end: measured = scale * sum + offset, fitted by least squares. The
fit's residuals, and the error on candidates measured later, are reported with the result.

Widths matter beyond their MACs: on AVX-512 CPUs ONNX Runtime runs convolutions in an NCHWc layout
with blocks of 16 channels, and a width that is not a multiple of 16 drops out of it, adding layout
reorders around that layer which a single-node graph does not show. On ResNet-56 (batch 1, one
thread, 2-core EPYC, ORT 1.31) the calibrated table was off by 15 % mean / 20 % max on unseen
candidates with widths rounded to 8, and 2 % / 4 % rounded to 16. The final whole-model checks
catch what the table misses either way."""

from __future__ import annotations

import itertools
import os
import tempfile
from collections.abc import Callable, Iterable
from pathlib import Path

import numpy as np
import torch.nn as nn

from deepshrink.errors import ExportError
from deepshrink.nas.search.config import PROVIDERS, LatencyConfig, Runtime
from deepshrink.nas.search.costs import LayerShape
from deepshrink.nas.search.space import Genome, SearchSpace

OPSET = 17


def runtime_session(model: bytes | str | os.PathLike, latency: LatencyConfig):
    """An ONNX Runtime session on the configured provider (CPU as fallback for unsupported ops)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = latency.threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.log_severity_level = 3
    providers = list(dict.fromkeys([PROVIDERS[latency.runtime], PROVIDERS[Runtime.ORT]]))
    source = model if isinstance(model, bytes) else str(model)
    try:
        return ort.InferenceSession(source, sess_options=options, providers=providers)
    except Exception as exc:
        raise ExportError(f"ONNX Runtime ({latency.runtime.value}) cannot load the graph: {exc}") from None


def time_session(session, input_shape: tuple[int, ...], seconds: float, quantile: float) -> float:
    """The `quantile` of the milliseconds of one run, over as many runs as fit in about `seconds`."""
    from deepshrink.export import onnx_latency_ms

    batch, size = input_shape[0], input_shape[1:]
    probe = onnx_latency_ms(session, batch, size, warmup=2, repeats=3).median
    repeats = int(min(500, max(10, seconds * 1e3 / max(probe, 1e-3))))
    samples = sorted(onnx_latency_ms(session, batch, size, warmup=1, repeats=repeats).samples)
    return samples[round(quantile * (len(samples) - 1))]


def measure_model(model: nn.Module, input_size: tuple[int, ...], latency: LatencyConfig) -> float:
    """Whole-model latency: export to ONNX, then time it on the configured runtime."""
    from deepshrink.export import export_onnx

    with tempfile.TemporaryDirectory(prefix="deepshrink-search-") as tmp:
        path = export_onnx(model, Path(tmp) / "model.onnx", input_size)
        session = runtime_session(path, latency)
        return time_session(session, (latency.batch_size, *input_size), latency.model_seconds, latency.quantile)


def _single_node(shape: LayerShape, cin: int, cout: int, groups: int, batch: int) -> tuple[bytes, tuple[int, ...]]:
    """A one-node ONNX graph of the layer at the given widths, and its input shape."""
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    if shape.kind == "conv":
        weight = rng.standard_normal((cout, cin // groups, *shape.kernel), dtype=np.float32)
        input_shape = (batch, cin, *shape.spatial)
        node = helper.make_node("Conv", ["input", "W", "B"], ["output"], kernel_shape=list(shape.kernel),
                                strides=list(shape.stride), pads=list(shape.padding) * 2,
                                dilations=list(shape.dilation), group=groups)
    else:
        weight = rng.standard_normal((cout, cin), dtype=np.float32)
        input_shape = (batch * shape.rows, cin)
        node = helper.make_node("Gemm", ["input", "W", "B"], ["output"], transB=1)
    graph = helper.make_graph(
        [node], shape.kind, [helper.make_tensor_value_info("input", TensorProto.FLOAT, list(input_shape))],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, None)],
        initializer=[numpy_helper.from_array(weight, "W"), numpy_helper.from_array(np.zeros(cout, np.float32), "B")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])
    model.ir_version = 8  # old enough for every ONNX Runtime we support
    return model.SerializeToString(), input_shape


def entry_key(shape: LayerShape, cin: int, cout: int, groups: int, batch: int) -> str:
    if shape.kind == "conv":
        return (f"conv {cin}->{cout} k{shape.kernel} s{shape.stride} p{shape.padding} d{shape.dilation} "
                f"g{groups} in{shape.spatial} b{batch}")
    return f"linear {cin}->{cout} rows{shape.rows} b{batch}"


class LatencyTable:
    """Measured single-layer latencies (ms) by shape key, and the calibration to whole models."""

    def __init__(self, space: SearchSpace, latency: LatencyConfig, state: dict | None = None) -> None:
        self.space, self.latency = space, latency
        state = state or {}
        self.entries: dict[str, float] = dict(state.get("entries", {}))
        self.calibration: dict = dict(state.get("calibration", {"scale": 1.0, "offset": 0.0, "points": []}))

    def to_dict(self) -> dict:
        return {"runtime": self.latency.runtime.value, "batch_size": self.latency.batch_size,
                "threads": self.latency.threads, "entries": self.entries, "calibration": self.calibration}

    def _layer_entries(self, shape: LayerShape, removed: list[int]) -> tuple[str, Callable[[], tuple]]:
        cin, cout, groups = shape.channels(removed)
        batch = self.latency.batch_size
        return entry_key(shape, cin, cout, groups, batch), lambda: _single_node(shape, cin, cout, groups, batch)

    def shapes(self) -> dict[str, Callable[[], tuple]]:
        """Every layer shape any candidate can have: each layer over the levels of its genes."""
        found: dict[str, Callable[[], tuple]] = {}
        for shape in self.space.cost.layers:
            genes = sorted({g for d in (shape.in_dim, shape.out_dim) for g, _ in d.shares})
            for levels in itertools.product(*(range(self.space.levels[g]) for g in genes)):
                genome = [0] * len(self.space.genes)
                for gene, level in zip(genes, levels):
                    genome[gene] = level
                key, build = self._layer_entries(shape, self.space.removed(tuple(genome)))
                found.setdefault(key, build)
        return found

    def measure(self, builds: dict[str, Callable[[], tuple]], tick: Callable[[], None] | None = None) -> None:
        for key, build in builds.items():
            if key not in self.entries:
                graph, input_shape = build()
                session = runtime_session(graph, self.latency)
                self.entries[key] = time_session(session, input_shape, self.latency.entry_seconds,
                                                 self.latency.quantile)
            if tick is not None:
                tick()

    def raw(self, genome: Genome) -> float:
        """Sum of the table over the candidate's layers (shapes not yet in the table are timed now)."""
        removed = self.space.removed(genome)
        parts = [self._layer_entries(shape, removed) for shape in self.space.cost.layers]
        self.measure({key: build for key, build in parts if key not in self.entries})
        return sum(self.entries[key] for key, _ in parts)

    def predict(self, genome: Genome) -> float:
        return self.calibration["scale"] * self.raw(genome) + self.calibration["offset"]

    def calibrate(self, points: Iterable[tuple[str, Genome, float]]) -> None:
        """Fit measured = scale * raw + offset on (name, genome, measured ms) points."""
        rows = [(name, list(genome), self.raw(genome), ms) for name, genome, ms in points]
        raw = np.array([r[2] for r in rows])
        measured = np.array([r[3] for r in rows])
        scale, offset = 1.0, float(np.mean(measured - raw))
        if len(rows) >= 2 and np.ptp(raw) > 1e-9:
            fitted, intercept = np.polyfit(raw, measured, 1)
            if fitted > 0:  # a negative slope is noise, not physics: keep the offset-only fit
                scale, offset = float(fitted), float(intercept)
        self.calibration = {
            "scale": scale, "offset": offset,
            "points": [{"name": n, "genome": g, "raw_ms": r, "measured_ms": m,
                        "predicted_ms": scale * r + offset} for n, g, r, m in rows],
        }
        self.calibration["fit_error"] = relative_errors(self.calibration["points"])


def relative_errors(points: list[dict]) -> dict[str, float]:
    """Mean and max |predicted - measured| / measured over measured points."""
    errors = [abs(p["predicted_ms"] - p["measured_ms"]) / p["measured_ms"] for p in points if p["measured_ms"] > 0]
    return {"mean": float(np.mean(errors)) if errors else 0.0, "max": float(np.max(errors)) if errors else 0.0,
            "n": len(errors)}
