"""`compress`: the pipeline verb: a recipe (path, dict or Recipe) in, a run directory with the
final model, ONNX files and the report out."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from deepshrink.errors import ConfigError
from deepshrink.pipeline.recipe import Recipe, check_resources, load_recipe, parse_recipe
from deepshrink.pipeline.runner import run_recipe


def compress(recipe: str | os.PathLike | dict | Recipe, *, out: str | os.PathLike | None = None,
             from_step: str | None = None, smoke: bool = False, command: str = "") -> dict[str, Any]:
    """Run every step of `recipe`, resuming after the last completed one; returns report.json's dict."""
    source = str(recipe) if isinstance(recipe, (str, os.PathLike)) else "<recipe>"
    if isinstance(recipe, (str, os.PathLike)):
        recipe = load_recipe(recipe)
    elif isinstance(recipe, dict):
        recipe = parse_recipe(recipe)
    check_resources(recipe, source=source)
    out_dir = Path(out or recipe.out or f"runs/{recipe.name or 'compress'}")
    if smoke and out is None:
        out_dir = out_dir.with_name(out_dir.name + "-smoke")
    if not recipe.parsed_steps:
        raise ConfigError("recipe has no steps")
    return run_recipe(recipe, out_dir=out_dir, from_step=from_step, smoke=smoke, command=command)
