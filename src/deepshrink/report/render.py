"""Render report.json (every metric after every step) as report.md and report.html with plots."""

from __future__ import annotations

import base64
import html
import os
from pathlib import Path
from typing import Any

from deepshrink.fileio import atomic_write_bytes, read_json
from deepshrink.report import plots

COLUMNS = ("name", "top1", "params", "macs", "bytes", "ort_b1", "ort_b64")
SCORE_LABELS = {"top1": "top-1 %", "map50": "mAP@0.5 %"}  # a report's `score`: what its task ranks by


def stage_header(score: str = "top1") -> list[str]:
    return ["stage", f"{SCORE_LABELS[score]} (Δ)", "params (×)", "MACs (×)", "bytes (×)", "ORT b1 ms (×)", "ORT b64 ms (×)"]


def stage_table(stages: list[dict[str, Any]], score: str = "top1") -> list[list[str]]:
    """Rows of strings: each stage with its ratios against the first (uncompressed) stage."""
    if not stages:
        return []
    base = stages[0]
    rows = []
    for stage in stages:
        latency = stage.get("latency_ms", {})
        cells = [stage["name"], _fmt_top1(stage.get(score), base.get(score))]
        for key in ("params", "macs", "bytes"):
            cells.append(_fmt_ratio(stage.get(key), base.get(key), integer=True))
        for key in ("ort_b1", "ort_b64"):
            cells.append(_fmt_ratio(latency.get(key), base.get("latency_ms", {}).get(key)))
        rows.append(cells)
    return rows


def _fmt_top1(value: float | None, base: float | None) -> str:
    if value is None:
        return "–"
    if base is None:
        return f"{value:.2f}"
    return f"{value:.2f} ({value - base:+.2f})"


def _fmt_ratio(value: float | None, base: float | None, integer: bool = False) -> str:
    if value is None:
        return "–"
    text = f"{value:,.0f}" if integer else f"{value:.3f}"
    if base:
        text += f" ({base / value:.2f}×)" if value else ""
    return text


def deploy_rows(deploy: dict[str, Any]) -> list[list[str]]:
    """One row per deployed artifact and metric: ('export: onnx_int8', 'bytes', '270,120')."""
    rows = []
    for step, artifacts in deploy.items():
        for artifact, values in artifacts.items():
            values = values if isinstance(values, dict) else {"value": values}
            rows += [[f"{step}: {artifact}", key, _fmt_value(value)] for key, value in values.items()]
    return rows


def _fmt_value(value: Any) -> str:
    if isinstance(value, bool) or value is None:
        return str(value)
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def machine_line(report: dict[str, Any]) -> str:
    env, versions = report.get("machine", {}), report.get("versions", {})
    parts = [env.get("cpu", "?"), f"{env.get('cores_available', '?')} cores", f"{env.get('torch_threads', '?')} torch threads",
             env.get("os", "")]
    parts += [f"{k} {v}" for k, v in versions.items() if v]
    return ", ".join(p for p in parts if p)


def _markdown_table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def _make_plots(report: dict[str, Any], out_dir: Path) -> dict[str, Path]:
    stages, score = report.get("stages", []), report.get("score", "top1")
    batch = "64" if any("ort_b64" in s.get("latency_ms", {}) for s in stages) else "1"
    label = SCORE_LABELS[score].replace(" %", " (%)")
    made: dict[str, Path | None] = {
        "accuracy vs size": plots.accuracy_tradeoff(stages, "bytes", "bytes on disk", out_dir / "plot_size.png",
                                                    score=score, score_label=label),
        "accuracy vs latency": plots.accuracy_tradeoff(
            stages, "latency", f"ONNX Runtime latency, batch {batch} (ms)", out_dir / "plot_latency.png",
            score=score, score_label=label, latency_key=f"ort_b{batch}"),
        "training curves": plots.training_curves(stages, out_dir / "plot_training.png"),
    }
    if len(stages) >= 2:
        first, last = stages[0], stages[-1]
        made["MACs per layer"] = plots.per_layer_bars(
            first.get("macs_per_layer", {}), last.get("macs_per_layer", {}), "MACs", out_dir / "plot_macs_per_layer.png")
        made["kept channels per layer"] = plots.per_layer_bars(
            first.get("channels_per_layer", {}), last.get("channels_per_layer", {}), "output channels", out_dir / "plot_channels.png")
    for step in report.get("steps", []):
        for caption, relative in step.get("figures", {}).items():
            made[f"step {step['index'] + 1} ({step['kind']}): {caption}"] = out_dir / relative
    return {title: path for title, path in made.items() if path is not None and path.is_file()}


def render_report(run_dir: str | os.PathLike) -> tuple[Path, Path]:
    """(Re)write report.md and report.html from run_dir/report.json."""
    run_dir = Path(run_dir)
    report = read_json(run_dir / "report.json")
    score = report.get("score", "top1")
    header = stage_header(score)
    table = _markdown_table(header, stage_table(report.get("stages", []), score))
    figures = _make_plots(report, run_dir)
    title = report.get("title", run_dir.name)
    deploy = deploy_rows(report.get("deploy", {}))

    md = [f"# {title}", "", f"Command: `{report.get('command', '')}`", "", table, ""]
    if deploy:
        md += ["## Deployment", "", _markdown_table(["artifact", "metric", "value"], deploy), ""]
    md += [f"Machine: {machine_line(report)}", ""]
    md += [f"![{t}]({p.relative_to(run_dir).as_posix()})" for t, p in figures.items()]
    md_path = atomic_write_bytes(run_dir / "report.md", ("\n".join(md) + "\n").encode())

    body = [f"<h1>{html.escape(title)}</h1>", f"<p>Command: <code>{html.escape(report.get('command', ''))}</code></p>",
            "<table border=1 cellpadding=4 style='border-collapse:collapse'>",
            "<tr>" + "".join(f"<th>{html.escape(h)}</th>" for h in header) + "</tr>"]
    for row in stage_table(report.get("stages", []), score):
        body.append("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>")
    body.append("</table>")
    if deploy:
        body.append("<h2>Deployment</h2><table border=1 cellpadding=4 style='border-collapse:collapse'>"
                    "<tr><th>artifact</th><th>metric</th><th>value</th></tr>")
        body += ["<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>" for row in deploy]
        body.append("</table>")
    body.append(f"<p>Machine: {html.escape(machine_line(report))}</p>")
    for caption, path in figures.items():
        data = base64.b64encode(path.read_bytes()).decode()
        body.append(f"<figure><img src='data:image/png;base64,{data}'><figcaption>{html.escape(caption)}</figcaption></figure>")
    page = "<!doctype html><html><head><meta charset='utf-8'><title>{}</title></head><body style='font-family:sans-serif'>{}</body></html>"
    html_path = atomic_write_bytes(run_dir / "report.html", page.format(html.escape(title), "\n".join(body)).encode())
    return md_path, html_path
