"""The plots of a run report, drawn with matplotlib's Agg backend into PNG files."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def _save(fig, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


VALIDATION_CURVES = {"val_top1": "validation top-1 (%)", "val_map50": "validation mAP@0.5 (%)"}


def accuracy_tradeoff(stages: list[dict], x_key: str, x_label: str, path: Path, *, connect: bool = True,
                      log_x: bool = False, score: str = "top1", score_label: str = "top-1 (%)",
                      latency_key: str = "ort_b64") -> Path | None:
    """`score` (top-1, or mAP) against `x_key` (or ORT `latency_key` latency for "latency"), one
    labelled point per stage or row; `connect` joins them in order (the stages of one run),
    otherwise a scatter."""
    points = [(s.get(x_key) if x_key != "latency" else s.get("latency_ms", {}).get(latency_key), s.get(score), s["name"])
              for s in stages]
    points = [p for p in points if p[0] is not None and p[1] is not None]
    if not points:
        return None
    fig, ax = plt.subplots(figsize=(6, 4))
    xs, ys, names = zip(*points)
    ax.plot(xs, ys, "o-" if connect else "o", color="tab:blue")
    if log_x:
        ax.set_xscale("log")
    for x, y, name in points:
        ax.annotate(name, (x, y), textcoords="offset points", xytext=(4, 4), fontsize=8)
    ax.set_xlabel(x_label)
    ax.set_ylabel(score_label)
    ax.grid(alpha=0.3)
    return _save(fig, path)


def per_layer_bars(before: dict[str, float], after: dict[str, float], ylabel: str, path: Path) -> Path | None:
    names = [n for n in before if before[n]]
    if not names:
        return None
    fig, ax = plt.subplots(figsize=(max(6, len(names) * 0.22), 4))
    xs = range(len(names))
    ax.bar([x - 0.2 for x in xs], [before[n] for n in names], width=0.4, label="before")
    ax.bar([x + 0.2 for x in xs], [after.get(n, 0) for n in names], width=0.4, label="after")
    ax.set_xticks(list(xs))
    ax.set_xticklabels(names, rotation=90, fontsize=6)
    ax.set_ylabel(ylabel)
    ax.legend()
    return _save(fig, path)


def training_curves(stages: list[dict], path: Path) -> Path | None:
    trained = [s for s in stages if s.get("history")]
    if not trained:
        return None
    fig, (loss_ax, acc_ax) = plt.subplots(1, 2, figsize=(10, 4))
    # classifiers log val_top1 per epoch, detectors val_map50
    val_key, val_label = next(((k, label) for k, label in VALIDATION_CURVES.items()
                               if any(h.get(k) is not None for s in trained for h in s["history"])), (None, ""))
    offset = 0
    for stage in trained:
        history = stage["history"]
        epochs = [offset + i + 1 for i in range(len(history))]
        loss_ax.plot(epochs, [h.get("train_loss") for h in history], label=stage["name"])
        if val_key and any(h.get(val_key) is not None for h in history):
            acc_ax.plot(epochs, [h.get(val_key) for h in history], label=stage["name"])
        offset += len(history)
    loss_ax.set_xlabel("epoch (across steps)")
    loss_ax.set_ylabel("train loss")
    acc_ax.set_xlabel("epoch (across steps)")
    acc_ax.set_ylabel(val_label or "validation score (none logged)")
    for ax in (loss_ax, acc_ax):
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    return _save(fig, path)
