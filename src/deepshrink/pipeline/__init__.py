"""The recipe pipeline: validate a recipe, run its steps with per-step checkpoints, report."""

from deepshrink.pipeline.api import compress
from deepshrink.pipeline.recipe import Recipe, load_recipe, parse_recipe

__all__ = ["Recipe", "compress", "load_recipe", "parse_recipe"]
