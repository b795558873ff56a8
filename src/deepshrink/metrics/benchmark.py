"""The shared benchmark writer: `docs/benchmarks/NAME.json` (command, machine, versions, budget,
rows) and `NAME.md` (the same rows as a table, with ratios against the first row, the baseline).
Every number in a row is measured by the benchmark script, never typed in."""

from __future__ import annotations

import importlib.metadata
import json
import os
import platform
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from deepshrink.errors import ConfigError
from deepshrink.fileio import atomic_write_bytes, write_json
from deepshrink.metrics.profiling import Profile
from deepshrink.metrics.table import markdown_table

PACKAGES = ("torch", "onnxruntime", "onnx", "numpy", "deepshrink")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


def machine_info() -> dict[str, Any]:
    """CPU model, its vector ISA as PyTorch sees it, whether int8 dot products saturate (no VNNI:
    int8 speed and deployed accuracy differ), core counts, PyTorch's thread count and the OS."""
    from deepshrink.quantization.cpu import int8_dot_saturates

    affinity = os.sched_getaffinity(0) if hasattr(os, "sched_getaffinity") else None
    return {
        "cpu": _cpu_model(),
        "simd": torch.backends.cpu.get_cpu_capability(),
        "int8_vnni": not int8_dot_saturates(),
        "cores": os.cpu_count(),
        "cores_available": len(affinity) if affinity is not None else os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "os": platform.platform(),
    }


def versions() -> dict[str, str | None]:
    """Versions of Python and the packages that decide the numbers (None when not installed)."""
    found: dict[str, str | None] = {"python": platform.python_version()}
    for package in PACKAGES:
        try:
            found[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            found[package] = None
    return found


def row_from_profile(name: str, profile: Profile, top1: float | None = None, **extra: Any) -> dict[str, Any]:
    """A benchmark row: name, top1 (when measured), params, macs, bytes, latency_ms, then the
    zipped size, thread count and any `extra` fields (e.g. `method="fpgm"`)."""
    row: dict[str, Any] = {"name": name}
    if top1 is not None:
        row["top1"] = float(top1)
    row.update(
        params=profile.params,
        macs=profile.macs,
        bytes=profile.bytes,
        latency_ms=dict(profile.latency_ms),
        bytes_zipped=profile.bytes_zipped,
        threads=profile.threads,
    )
    row.update(extra)
    return row


def write_benchmark(
    name: str,
    rows: Sequence[dict[str, Any]],
    *,
    command: str,
    budget: Any,
    out_dir: str | os.PathLike = "docs/benchmarks",
    notes: str | None = None,
) -> tuple[Path, Path]:
    """Write `out_dir/NAME.json` and `out_dir/NAME.md`; return both paths. rows[0] is the baseline."""
    if not isinstance(name, str) or not _NAME.match(name):
        raise ConfigError(f"benchmark name must be a plain file name (letters, digits, '_', '.', '-'), got {name!r}")
    if not isinstance(command, str) or not command.strip():
        raise ConfigError("benchmark command must be the command line that reproduces the numbers")
    checked = _check_rows(rows)
    record: dict[str, Any] = {
        "command": command,
        "machine": machine_info(),
        "versions": versions(),
        "budget": budget,
        "rows": checked,
    }
    if notes:
        record["notes"] = notes
    out = Path(out_dir)
    json_path = write_json(out / f"{name}.json", record)
    figures = _plots(name, checked, out)
    md_path = atomic_write_bytes(out / f"{name}.md", _markdown(name, record, figures).encode())
    return json_path, md_path


def _plots(name: str, rows: list[dict[str, Any]], out: Path) -> dict[str, Path]:
    """top-1 against bytes and against ORT batch-64 latency, when at least two rows have a top-1."""
    from deepshrink.report.plots import accuracy_tradeoff

    if sum(row.get("top1") is not None for row in rows) < 2:
        return {}
    figures = {"top-1 against bytes on disk": accuracy_tradeoff(rows, "bytes", "bytes", out / f"{name}_size.png",
                                                                connect=False, log_x=True),
               "top-1 against ONNX Runtime latency, batch 64": accuracy_tradeoff(
                   rows, "latency", "ORT latency at batch 64 (ms)", out / f"{name}_latency.png", connect=False)}
    return {caption: path for caption, path in figures.items() if path is not None}


def _check_rows(rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    if isinstance(rows, (str, bytes)) or not isinstance(rows, Sequence) or not rows:
        raise ConfigError("benchmark rows must be a non-empty list of dicts; the first row is the baseline")
    for index, row in enumerate(rows):
        if not isinstance(row, dict) or not isinstance(row.get("name"), str) or not row["name"]:
            raise ConfigError(f"benchmark row {index} must be a dict with a non-empty 'name'")
        if not isinstance(row.get("latency_ms", {}), dict):
            raise ConfigError(
                f"benchmark row {index} ('{row['name']}'): latency_ms must be a dict like {{'ort_b1': 1.2}}"
            )
    return [dict(row) for row in rows]


def _isa(machine: dict[str, Any]) -> str:
    """' (AVX2, no VNNI)' for records that say; older records did not."""
    if "simd" not in machine:
        return ""
    return f" ({machine['simd']}, {'VNNI' if machine.get('int8_vnni') else 'no VNNI'})"


def _markdown(name: str, record: dict[str, Any], figures: dict[str, Path] | None = None) -> str:
    machine = record["machine"]
    budget = record["budget"] if isinstance(record["budget"], str) else json.dumps(record["budget"])
    lines = [
        f"# Benchmark: {name}",
        "",
        f"- command: `{record['command']}`",
        f"- machine: {machine['cpu']}{_isa(machine)}, {machine['cores_available']} cores available, "
        f"{machine['torch_threads']} torch threads, {machine['os']}",
        "- versions: " + ", ".join(f"{k} {v}" for k, v in record["versions"].items() if v),
        f"- budget: {budget}",
        "",
        markdown_table(record["rows"]),
    ]
    if record.get("notes"):
        lines += ["", record["notes"]]
    if figures:
        lines += [""] + [f"![{caption}]({path.name})" for caption, path in figures.items()]
    return "\n".join(lines) + "\n"


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"
