"""Steps that need no compression family: train, evaluate."""

from __future__ import annotations

from pathlib import Path

import torch.nn as nn
from typing import Literal

from pydantic import BaseModel, ConfigDict

from deepshrink.pipeline.context import RunContext
from deepshrink.pipeline.steps.base import Step, StepOutput, register_step
from deepshrink.training import TrainConfig


@register_step("train")
class TrainStep(Step):
    """Train or fine-tune the current model with the engine (checkpoint every epoch, resumable)."""

    Options = TrainConfig

    def run(self, options: TrainConfig, ctx: RunContext, model: nn.Module, step_dir: Path) -> StepOutput:
        result = ctx.task.train(model, ctx.data, ctx.train_config(options), out_dir=step_dir / "train")
        return StepOutput(result.model, history=result.history)


class EvaluateOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")

    split: Literal["test", "val", "train"] = "test"


@register_step("evaluate")
class EvaluateStep(Step):
    """Record the current model's metrics as a stage of the report (no change to the model)."""

    Options = EvaluateOptions

    def run(self, options: EvaluateOptions, ctx: RunContext, model: nn.Module, step_dir: Path) -> StepOutput:
        scores = ctx.task.evaluate(model, ctx.data, split=options.split, limit_batches=ctx.limit_batches)
        return StepOutput(model, extra={"evaluate": {options.split: scores}})
