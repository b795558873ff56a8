"""The state a step sees: recipe, data, output directory, the input model, smoke-run limits."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch.nn as nn

from deepshrink.pipeline.recipe import Recipe

SMOKE_BATCHES = 2


@dataclass
class RunContext:
    recipe: Recipe
    out_dir: Path
    data: Any  # DataBundle
    baseline: nn.Module  # the model as loaded, before any step: teacher of self-distillation
    smoke: bool = False

    def train_config(self, config: Any) -> Any:
        """The step's TrainConfig, shrunk to a couple of batches for --smoke runs."""
        if config is None or not self.smoke:
            return config
        return config.model_copy(update={"epochs": min(config.epochs, 1), "limit_batches": SMOKE_BATCHES})

    @property
    def limit_batches(self) -> int | None:
        return SMOKE_BATCHES if self.smoke else None

