"""Rich progress for a search: the latency table as it is measured, then one bar per generation
with the best candidate within budget so far. Drawn on a terminal only (stderr)."""

from __future__ import annotations

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn


class SearchProgress:
    def __init__(self, enabled: bool, generations: int, console: Console | None = None) -> None:
        console = console or Console(stderr=True)
        self.generations = generations
        self._bar = None
        if enabled and console.is_terminal:
            self._bar = Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                                 TextColumn("{task.fields[best]}"), TimeElapsedColumn(), TextColumn("eta"),
                                 TimeRemainingColumn(), console=console)
        self._task = None

    def __enter__(self) -> "SearchProgress":
        if self._bar is not None:
            self._bar.start()
        return self

    def __exit__(self, *exc) -> None:
        if self._bar is not None:
            self._bar.stop()

    def table(self, done: int, total: int) -> None:
        """Latency-table entries measured so far."""
        if self._bar is None:
            return
        if self._task is None:
            self._task = self._bar.add_task("latency table", total=total, best="")
        self._bar.update(self._task, completed=done)

    def start_generation(self, generation: int, size: int) -> None:
        if self._bar is not None:
            if self._task is not None:
                self._bar.update(self._task, visible=False)
            self._task = self._bar.add_task(f"generation {generation}/{self.generations}", total=size, best="")

    def advance(self, best: dict | None) -> None:
        if self._bar is not None and self._task is not None:
            text = "no candidate within budget yet" if best is None else f"best proxy top-1 {best['top1']:.2f} %"
            self._bar.update(self._task, advance=1, best=text)
