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
    task: Any = None  # pipeline.task: ClassificationTask or DetectionTask, from the data spec

    def __post_init__(self) -> None:
        if self.task is None:
            from deepshrink.pipeline.task import task_for

            self.task = task_for(self.recipe.data)

    def train_config(self, config: Any) -> Any:
        """The step's TrainConfig, shrunk to a couple of batches for --smoke runs."""
        if config is None or not self.smoke:
            return config
        return config.model_copy(update={"epochs": min(config.epochs, 1), "limit_batches": SMOKE_BATCHES})

    def model_after(self, number: str) -> nn.Module:
        """The saved model of step `number` (1-based) of this run."""
        from deepshrink.errors import ConfigError
        from deepshrink.models import load

        entry = self.recipe.parsed_steps[int(number) - 1]
        directory = self.out_dir / "steps" / f"{entry.index + 1:02d}-{entry.kind}" / "model"
        if not directory.is_dir():
            raise ConfigError(f"step:{number} ({entry.kind}) has no saved model in {directory}")
        return load(directory)

    @property
    def limit_batches(self) -> int | None:
        return SMOKE_BATCHES if self.smoke else None

