"""Rich progress bar with throughput, loss and ETA, drawn by rank 0 on a terminal only.

It is refreshed by hand every `every` steps (no refresh thread), so it costs nothing measurable:
one host sync per refresh to read the running loss."""

from __future__ import annotations

import logging

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

log = logging.getLogger("deepshrink.training")


class EpochProgress:
    def __init__(self, enabled: bool, epochs: int, every: int = 10, console: Console | None = None) -> None:
        self.every = max(1, every)
        self.epochs = epochs
        console = console or Console(stderr=True)
        self._bar: Progress | None = None
        if enabled and console.is_terminal:
            self._bar = Progress(
                TextColumn("[bold]{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("{task.fields[images_per_s]:>7.0f} img/s  loss {task.fields[loss]:.4f}"),
                TimeElapsedColumn(),
                TextColumn("eta"),
                TimeRemainingColumn(),
                console=console,
                auto_refresh=False,
                transient=False,
            )
            self._bar.start()
        self._task = None

    @property
    def active(self) -> bool:
        return self._bar is not None

    def start_epoch(self, epoch: int, steps: int) -> None:
        if self._bar is not None:
            self._task = self._bar.add_task(f"epoch {epoch + 1}/{self.epochs}", total=steps, images_per_s=0.0, loss=0.0)
            self._bar.refresh()

    def due(self, steps_done: int) -> bool:
        return self._bar is not None and steps_done % self.every == 0

    def update(self, steps_done: int, loss: float, images_per_s: float) -> None:
        if self._bar is not None and self._task is not None:
            self._bar.update(self._task, completed=steps_done, loss=loss, images_per_s=images_per_s)
            self._bar.refresh()

    def end_epoch(self, record: dict) -> None:
        line = format_record(record)
        log.info(line)
        if self._bar is not None:
            if self._task is not None:
                self._bar.remove_task(self._task)
                self._task = None
            self._bar.console.print(line, markup=False, highlight=False)
            self._bar.refresh()

    def close(self) -> None:
        if self._bar is not None:
            self._bar.stop()
            self._bar = None


def format_record(record: dict) -> str:
    parts = [f"epoch {record['epoch']}", f"lr {record['lr']:.4g}", f"train loss {record['train_loss']:.4f}",
             f"top-1 {record['train_top1']:.2f}%"]
    if "val_top1" in record:
        parts.append(f"val loss {record['val_loss']:.4f} top-1 {record['val_top1']:.2f}%")
    parts.append(f"{record['images_per_s']:.0f} img/s, {record['seconds']:.1f}s")
    return " | ".join(parts)
