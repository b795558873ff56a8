"""Pipeline commands: compress, report, compare."""

from __future__ import annotations

import shlex
import sys
from pathlib import Path

import click

from deepshrink.cli.common import console


@click.command()
@click.argument("recipe", type=click.Path(dir_okay=False))
@click.option("--out", type=click.Path(file_okay=False), default=None, help="Run directory (default: the recipe's `out`).")
@click.option("--from", "from_step", default=None, help="Re-run from this step (its name or 1-based number).")
@click.option("--smoke", is_flag=True, help="Run every step on a couple of batches to check the recipe in seconds.")
def compress(recipe: str, out: str | None, from_step: str | None, smoke: bool) -> None:
    """Run a compression recipe; re-running the same command resumes after the last completed step.

    Example: deepshrink compress examples/recipes/paper-resnet32-cifar10.yaml --smoke
    """
    from deepshrink.pipeline import compress as run

    command = "deepshrink " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    report = run(recipe, out=out, from_step=from_step, smoke=smoke, command=command)
    _print_stages(report["stages"], report.get("score", "top1"))


def _print_stages(stages: list[dict], score: str) -> None:
    from rich.table import Table

    from deepshrink.report.render import stage_header, stage_table

    table = Table(*stage_header(score), title="before → after", title_justify="left")
    for row in stage_table(stages, score):
        table.add_row(*row)
    console.print(table)


@click.command()
@click.argument("run_dir", type=click.Path(file_okay=False, exists=True))
def report(run_dir: str) -> None:
    """Re-render report.md and report.html of a run. Example: deepshrink report runs/demo"""
    from deepshrink.report import render_report

    md, html = render_report(Path(run_dir))
    console.print(f"wrote {md} and {html}")


@click.command()
@click.argument("run_dirs", nargs=-1, required=True, type=click.Path(file_okay=False, exists=True))
def compare(run_dirs: tuple[str, ...]) -> None:
    """Tabulate the final stage of several runs. Example: deepshrink compare runs/a runs/b"""
    from rich.table import Table

    from deepshrink.fileio import read_json

    table = Table("run", "final stage", "score %", "params", "MACs", "bytes", "ORT b1 ms", "ORT b64 ms")
    for run_dir in run_dirs:
        report = read_json(Path(run_dir) / "report.json")
        last, score = report["stages"][-1], report.get("score", "top1")
        latency = last.get("latency_ms", {})
        table.add_row(run_dir, last["name"], f"{score} {last[score]:.2f}", f"{last['params']:,}", f"{last['macs']:,}",
                      f"{last['bytes']:,}", str(latency.get("ort_b1", "–")), str(latency.get("ort_b64", "–")))
    console.print(table)


def register(group: click.Group) -> None:
    for command in (compress, report, compare):
        group.add_command(command)
