"""Where ONNX Runtime spends its time: per-node kernel times from its own profiler, on the graph
as it runs (after fusion and layout changes, so it names the Reorder and fused Conv nodes a user
never wrote). This answers "why is my pruned model not faster?": on this project's CPUs the NCHWc
convolutions of MLAS sped up about 2x when their input channels halved but only 1.1-1.2x when
their output channels fell to 8 or 16 (docs/benchmarks/pruning_latency_layers.md)."""

from __future__ import annotations

import json
import os
import statistics
import tempfile
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from deepshrink.errors import ExportError
from deepshrink.export.common import check_batch
from deepshrink.export.runtime import ort_session, static_input_size

KERNEL_SUFFIX = "_kernel_time"


@dataclass(frozen=True)
class NodeTime:
    name: str  # the optimised graph's node name
    op: str  # its operator, e.g. Conv (fused with its activation), ReorderInput, QLinearConv
    ms: float  # median over the profiled runs
    input_shapes: tuple[tuple[int, ...], ...]


def ort_node_times(path: str | os.PathLike, batch: int = 64, input_size: Sequence[int] | None = None, *,
                   threads: int | None = 1, runs: int = 10, warmup: int = 3) -> list[NodeTime]:
    """Kernel time of every node of the ONNX graph at `path` on a random batch, in execution order:
    the median of `runs` profiled runs after `warmup` ones. Single-threaded by default, so the
    times add up to the call's latency."""
    check_batch(batch)
    if runs < 1 or warmup < 0:
        raise ExportError(f"runs must be >= 1 and warmup >= 0, got runs={runs}, warmup={warmup}")
    with tempfile.TemporaryDirectory(prefix="ort_profile_") as tmp:
        session = ort_session(path, threads, profile_prefix=Path(tmp) / "profile")
        size = tuple(input_size) if input_size is not None else static_input_size(session)
        feed = {session.get_inputs()[0].name: np.random.default_rng(0).standard_normal((batch, *size), dtype=np.float32)}
        for _ in range(warmup + runs):
            session.run(None, feed)
        events = json.loads(Path(session.end_profiling()).read_text())
    return _node_times(events, warmup)


def _node_times(events: list[dict], warmup: int) -> list[NodeTime]:
    per_node: dict[str, list[float]] = defaultdict(list)
    info: dict[str, tuple[str, tuple]] = {}
    for event in events:
        if event.get("cat") != "Node" or not event.get("name", "").endswith(KERNEL_SUFFIX):
            continue
        name = event["name"][: -len(KERNEL_SUFFIX)]
        per_node[name].append(event["dur"] / 1000)
        args = event.get("args", {})
        shapes = tuple(tuple(next(iter(item.values()))) for item in args.get("input_type_shape", []) if item)
        info.setdefault(name, (args.get("op_name", "?"), shapes))
    return [NodeTime(name, info[name][0], statistics.median(times[warmup:] or times), info[name][1])
            for name, times in per_node.items()]


def op_totals(times: Sequence[NodeTime]) -> dict[str, float]:
    """Milliseconds per operator type, largest first."""
    totals: dict[str, float] = defaultdict(float)
    for node in times:
        totals[node.op] += node.ms
    return dict(sorted(totals.items(), key=lambda item: -item[1]))
