"""The `distill` step: knowledge distillation from one or more teachers, seed 001's `weights: auto`."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch.nn as nn
from pydantic import BaseModel, ConfigDict, Field

from deepshrink.distillation.config import DistillConfig, KDWeights, WeightMode
from deepshrink.errors import ConfigError
from deepshrink.pipeline.context import RunContext
from deepshrink.pipeline.steps.base import Step, StepOutput, register_step

if TYPE_CHECKING:
    from deepshrink.pipeline.recipe import Recipe

INPUT_MODEL = "input"  # the recipe's model before any step: self-distillation of a pruned copy
STEP_PREFIX = "step:"  # the model after an earlier step, e.g. a teacher trained in step 1


class TeacherRef(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(description="zoo name, package.module:factory, a deepshrink model directory, "
                                  "'input' (the uncompressed model) or 'step:N' (the model after step N)")
    weights: str | None = None


class DistillStepOptions(DistillConfig):
    teachers: list[TeacherRef] = Field(min_length=1, description="teacher models; name 'input' = the uncompressed model")
    second: TeacherRef = Field(default_factory=lambda: TeacherRef(name=INPUT_MODEL),
                               description="network B of seed 001 eq. 7 (weights: auto); default the uncompressed model")


def build_teacher(ref: TeacherRef, ctx: RunContext) -> nn.Module:
    from deepshrink.models import resolve_model

    if ref.name == INPUT_MODEL:
        return ctx.baseline
    if ref.name.startswith(STEP_PREFIX):
        return ctx.model_after(ref.name[len(STEP_PREFIX):]).eval()
    data = ctx.data
    return resolve_model(ref.name, weights=ref.weights, num_classes=data.num_classes, input_size=data.input_size,
                         mean=data.mean, std=data.std).eval()


@register_step("distill")
class DistillStep(Step):
    Options = DistillStepOptions

    def check(self, options: DistillStepOptions, recipe: "Recipe", *, source: str, base_dir: Path | None) -> None:
        position = next(e.index for e in recipe.parsed_steps if e.options is options)
        for ref in [*options.teachers, options.second]:
            if ref.name.startswith(STEP_PREFIX):
                number = ref.name[len(STEP_PREFIX):]
                if not number.isdigit() or not 1 <= int(number) <= position:
                    raise ConfigError(f"{source}: distill step {position + 1}: teacher '{ref.name}' must name an "
                                      f"earlier step, step:1 to step:{position}")
            if ref.weights is not None and not Path(ref.weights).expanduser().is_file():
                raise ConfigError(f"{source}: distill teacher '{ref.name}': weights file {ref.weights} not found")

    def run(self, options: DistillStepOptions, ctx: RunContext, model: nn.Module, step_dir: Path) -> StepOutput:
        from deepshrink.fileio import write_json

        config = DistillConfig.model_validate(options.model_dump(exclude={"teachers", "second"}))
        config = config.with_updates(train=ctx.train_config(config.train))
        if ctx.smoke:
            config = config.with_updates(auto=config.auto.model_copy(update={"epochs": 1, "limit_batches": 2}),
                                         hint_epochs=min(config.hint_epochs, 1))
        teachers = [build_teacher(ref, ctx) for ref in options.teachers]
        allocation = None
        if config.weights is WeightMode.AUTO:
            allocation = _allocation(teachers, build_teacher(options.second, ctx), ctx, model, config, step_dir)
            config = config.with_updates(weights=KDWeights(**allocation["weights"]))
        result = ctx.task.distill(model, teachers, ctx.data, config, out_dir=step_dir / "train")
        if ctx.task.name == "detection":
            summary = {"temperature": config.temperature, "losses": "neck imitation + class-logit KD"}
        else:
            summary = {"alpha": result.config.weights.alpha, "beta": result.config.weights.beta,
                       "teacher_weights": list(result.teacher_weights), "allocation": allocation}
        write_json(step_dir / "distill.json", summary)
        return StepOutput(result.model, history=result.history, extra={"distill": summary})


def _allocation(teachers: list[nn.Module], second: nn.Module, ctx: RunContext, student: nn.Module,
                config: DistillConfig, step_dir: Path) -> dict[str, Any]:
    """Seed 001 eq. 7 weights, computed once per step and kept, so a resumed run skips the probes."""
    from deepshrink.distillation.weighting import allocate_weights
    from deepshrink.fileio import read_json, write_json

    path = step_dir / "allocation.json"
    if path.is_file():
        return read_json(path)
    record = allocate_weights(teachers, second, ctx.data, config, template=student).as_dict()
    write_json(path, record)
    return record
