"""`deepshrink demo`: the main job on the embedded digits data, runnable anywhere in a minute."""

from __future__ import annotations

import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

console = Console()


def run_demo(out_dir: Path, *, epochs: int = 15, seed: int = 0) -> dict:
    """Train the digits CNN, measure it, save it. Returns the metrics written to out_dir."""
    from deepshrink.data import load_data
    from deepshrink.fileio import write_json
    from deepshrink.metrics import evaluate, profile
    from deepshrink.models import create_model, save_model
    from deepshrink.training import TrainConfig, train

    start = time.perf_counter()
    data = load_data("digits", seed=seed)
    model = create_model(
        "digits_cnn", num_classes=data.num_classes, input_size=data.input_size, mean=data.mean, std=data.std
    )
    config = TrainConfig(epochs=epochs, batch_size=64, optimizer="adamw", lr=1e-2, weight_decay=1e-4,
                         schedule="cosine", seed=seed, augment=False)
    result = train(model, data, config, out_dir=out_dir / "train")
    metrics = evaluate(result.model, data, split="test")
    prof = profile(result.model, batch_sizes=(1, 64))
    save_model(result.model, out_dir / "model")
    summary = {"data": "digits", "model": "digits_cnn", "test": metrics, "profile": prof.to_dict(),
               "seconds": round(time.perf_counter() - start, 1)}
    write_json(out_dir / "metrics.json", summary)

    table = Table(title="deepshrink demo: digits_cnn on scikit-learn digits", title_justify="left")
    for column in ("top-1 %", "params", "MACs", "bytes", "ort b1 ms", "ort b64 ms"):
        table.add_column(column, justify="right")
    table.add_row(f"{metrics['top1']:.2f}", f"{prof.params:,}", f"{prof.macs:,}", f"{prof.bytes:,}",
                  f"{prof.latency_ms.get('ort_b1', float('nan')):.3f}", f"{prof.latency_ms.get('ort_b64', float('nan')):.3f}")
    console.print(table)
    console.print(f"finished in {summary['seconds']} s; outputs in {out_dir}")
    return summary
