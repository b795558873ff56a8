"""`compress`: run a recipe's steps in order, checkpointing each step's model, resuming after the
last completed step, and writing the report. A kill at any moment loses at most the current epoch:
completed steps are reloaded from their model directories and a step's training resumes from its
last epoch checkpoint."""

from __future__ import annotations

import hashlib
import json
import shutil
import time
from pathlib import Path
from typing import Any

import torch
from rich.console import Console

from deepshrink.errors import ConfigError
from deepshrink.fileio import read_json, write_json
from deepshrink.pipeline.context import RunContext
from deepshrink.pipeline.measure import measure_stage
from deepshrink.pipeline.recipe import Recipe, StepEntry

console = Console()
STATE_FILE = "state.json"


def _digest(entry: StepEntry) -> str:
    body = json.dumps({entry.kind: entry.options.model_dump(mode="json")}, sort_keys=True)
    return hashlib.sha256(body.encode()).hexdigest()[:16]


def step_dir(out_dir: Path, entry: StepEntry) -> Path:
    return out_dir / "steps" / f"{entry.index + 1:02d}-{entry.kind}"


def _from_index(recipe: Recipe, from_step: str | None) -> int | None:
    if from_step is None:
        return None
    if from_step.isdigit() and 1 <= int(from_step) <= len(recipe.parsed_steps):
        return int(from_step) - 1
    for entry in recipe.parsed_steps:
        if entry.kind == from_step:
            return entry.index
    names = ", ".join(f"{e.index + 1}:{e.kind}" for e in recipe.parsed_steps)
    raise ConfigError(f"--from '{from_step}': no such step; steps are {names}")


def _load_state(out_dir: Path, smoke: bool) -> dict[str, Any]:
    path = out_dir / STATE_FILE
    state = read_json(path) if path.is_file() else {"steps": [], "baseline": None, "smoke": smoke}
    if state.get("smoke") != smoke:  # never mix smoke results with real ones
        return {"steps": [], "baseline": None, "smoke": smoke}
    return state


def _reusable_prefix(recipe: Recipe, state: dict[str, Any], from_index: int | None) -> int:
    """How many leading steps completed earlier with identical options (and are not re-run)."""
    done = 0
    for entry, record in zip(recipe.parsed_steps, state["steps"]):
        if record.get("digest") != _digest(entry) or (from_index is not None and entry.index >= from_index):
            break
        done += 1
    return done


def smoke_data(data, seed: int):
    """Random evaluation subsets for --smoke: test splits are often sorted by class, and the first
    batches of one class would make a collapsed model look perfect."""
    import dataclasses

    from deepshrink.data import subset
    from deepshrink.pipeline.context import SMOKE_BATCHES

    size = SMOKE_BATCHES * 256
    return dataclasses.replace(data, test=subset(data.test, size, seed), val=subset(data.val, size, seed))


def run_recipe(recipe: Recipe, *, out_dir: Path, from_step: str | None = None, smoke: bool = False,
               command: str = "") -> dict[str, Any]:
    from deepshrink.models import load, resolve_model, save_model
    from deepshrink.pipeline.steps import STEPS
    from deepshrink.pipeline.task import task_for

    out_dir.mkdir(parents=True, exist_ok=True)
    write_json(out_dir / "recipe.resolved.json", recipe.resolved())
    task = task_for(recipe.data)
    data = task.load(recipe.data, seed=recipe.seed, image_size=recipe.image_size)
    if smoke:
        data = smoke_data(data, recipe.seed)
    torch.manual_seed(recipe.seed)  # a model trained from scratch starts from the same weights every run
    model = resolve_model(recipe.model.name, weights=recipe.model.weights, num_classes=data.num_classes,
                          input_size=data.input_size, mean=data.mean, std=data.std, options=recipe.model.options)
    ctx = RunContext(recipe=recipe, out_dir=out_dir, data=data, baseline=model, smoke=smoke, task=task)

    state = _load_state(out_dir, smoke)
    if state["baseline"] is None:
        console.print("[bold]measuring the input model[/]")
        state["baseline"] = measure_stage(ctx, "baseline", model)
        write_json(out_dir / STATE_FILE, state)
    keep = _reusable_prefix(recipe, state, _from_index(recipe, from_step))
    state["steps"] = state["steps"][:keep]
    if keep:
        model = load(step_dir(out_dir, recipe.parsed_steps[keep - 1]) / "model")
        console.print(f"resuming after step {keep} ({recipe.parsed_steps[keep - 1].kind})")

    for entry in recipe.parsed_steps[keep:]:
        directory = step_dir(out_dir, entry)
        if from_step is not None and directory.exists():
            shutil.rmtree(directory)  # an explicit re-run starts that step clean
        console.rule(f"step {entry.index + 1}/{len(recipe.parsed_steps)}: {entry.kind}")
        torch.manual_seed(recipe.seed + entry.index)
        started = time.perf_counter()
        step = STEPS.get(entry.kind)
        output = step.run(entry.options, ctx, model, directory)
        model = output.model
        save_model(model, directory / "model")
        record: dict[str, Any] = {"index": entry.index, "kind": entry.kind, "digest": _digest(entry),
                                  "seconds": round(time.perf_counter() - started, 1), **output.extra}
        if output.figures:  # paths relative to the run directory, so a moved run still renders
            record["figures"] = {caption: str(Path(path).relative_to(out_dir))
                                 for caption, path in output.figures.items()}
        if step.measures:
            record["stage"] = measure_stage(ctx, f"{entry.index + 1}-{entry.kind}", model,
                                            onnx_path=output.onnx_path, history=output.history)
        state["steps"].append(record)
        write_json(out_dir / STATE_FILE, state)
    return write_run_report(out_dir, recipe, state, command=command)


def write_run_report(out_dir: Path, recipe: Recipe, state: dict[str, Any], *, command: str) -> dict[str, Any]:
    from deepshrink.metrics.benchmark import machine_info, versions
    from deepshrink.report import render_report

    stages = [state["baseline"]] + [s["stage"] for s in state["steps"] if "stage" in s]
    deploy = {s["kind"]: s["deploy"] for s in state["steps"] if "deploy" in s}
    from deepshrink.pipeline.task import task_for

    report = {"title": recipe.name or out_dir.name, "command": command, "smoke": state.get("smoke", False),
              "score": task_for(recipe.data).score,
              "recipe": recipe.resolved(), "machine": machine_info(), "versions": versions(),
              "stages": stages, "deploy": deploy,
              "steps": [{k: v for k, v in s.items() if k != "stage"} for s in state["steps"]]}
    write_json(out_dir / "report.json", report)
    render_report(out_dir)
    return report
