"""`deepshrink demo`: the whole fusion pipeline (train, FPGM prune, distil, int8, ONNX) on the
embedded digits data, runnable anywhere in a few minutes on 2 CPU cores."""

from __future__ import annotations

import time
from importlib import resources
from pathlib import Path

from rich.console import Console

console = Console()
DEMO_RECIPE = "demo-digits.yaml"


def demo_recipe_path() -> Path:
    return Path(str(resources.files("deepshrink") / "recipes" / DEMO_RECIPE))


def run_demo(out_dir: Path, *, command: str = "deepshrink demo") -> dict:
    """Run the packaged demo recipe into `out_dir`; prints the uncompressed vs compressed model."""
    from deepshrink.pipeline import compress

    start = time.perf_counter()
    report = compress(demo_recipe_path(), out=out_dir, command=command)
    trained, final = report["stages"][1], report["stages"][-1]
    console.print(
        f"uncompressed (after training): top-1 {trained['top1']:.2f} %, {trained['bytes']:,} bytes, "
        f"ORT b64 {trained['latency_ms'].get('ort_b64', float('nan')):.3f} ms\n"
        f"compressed (pruned, distilled, int8 ONNX): top-1 {final['top1']:.2f} % "
        f"({final['top1'] - trained['top1']:+.2f}), {final['bytes']:,} bytes "
        f"({trained['bytes'] / final['bytes']:.1f}× smaller), "
        f"ORT b64 {final['latency_ms'].get('ort_b64', float('nan')):.3f} ms\n"
        f"finished in {time.perf_counter() - start:.0f} s; report: {out_dir / 'report.html'}"
    )
    return report
