"""The `prune` step: structured pruning with verified surgery, then optional fine-tuning."""

from __future__ import annotations

import itertools
from pathlib import Path

import torch.nn as nn
from pydantic import model_validator

from deepshrink.pipeline.context import RunContext
from deepshrink.pipeline.steps.base import Step, StepOutput, register_step
from deepshrink.pruning.config import DepthOptions, Policy, PruneConfig, SensitivityOptions
from deepshrink.training import TrainConfig


class PruneStepOptions(PruneConfig):
    finetune: TrainConfig | None = None
    sensitivity: SensitivityOptions | None = None
    depth: DepthOptions | None = None  # whole residual branches dropped after the channels, before fine-tuning

    @model_validator(mode="after")
    def _sensitivity_sets_the_ratios(self) -> PruneStepOptions:
        if self.depth is not None and self.schedule.kind != "one_shot":
            raise ValueError("depth drops branches once, after the channels: it needs schedule one_shot")
        if self.sensitivity is None:
            return self
        if (self.budget is None) == (self.sensitivity.max_drop is None):
            raise ValueError("sensitivity needs exactly one of budget (allocate within it) and sensitivity.max_drop")
        if "ratio" in self.model_fields_set or self.ratios or self.policy is not Policy.UNIFORM:
            raise ValueError("sensitivity sets the per-group ratios itself: leave ratio, ratios and policy out")
        return self


def train_batches(ctx: RunContext, count: int, batch_size: int = 64) -> list:
    """A few un-augmented training batches (data-driven criteria, calibration)."""
    from deepshrink.data import sample_loader

    loader = sample_loader(ctx.data, batch_size, limit_batches=count)
    return [(images, labels) for images, labels in loader]


@register_step("prune")
class PruneStep(Step):
    Options = PruneStepOptions

    def run(self, options: PruneStepOptions, ctx: RunContext, model: nn.Module, step_dir: Path) -> StepOutput:
        from deepshrink.fileio import write_json
        from deepshrink.pruning import prune

        config = PruneConfig.model_validate(options.model_dump(exclude={"finetune", "sensitivity", "depth"}))
        finetune_config = ctx.train_config(options.finetune)

        history: list[dict] = []
        rounds = itertools.count()

        def finetune(pruned: nn.Module) -> nn.Module:
            if finetune_config is None or finetune_config.epochs == 0:
                return pruned
            # One checkpoint directory per fine-tuning round (iterative pruning has several).
            out = step_dir / f"train-{next(rounds)}"
            result = ctx.task.train(pruned, ctx.data, finetune_config, out_dir=out)
            history.extend(result.history)
            return result.model

        batches = train_batches(ctx, config.advanced.calibration_batches)
        figures = {}
        if options.sensitivity is not None:
            config = _sensitivity_config(options.sensitivity, ctx, model, config, batches, step_dir)
            figures["pruning sensitivity per group (validation split)"] = step_dir / "sensitivity.png"
        result = prune(model, config=config, data=batches, finetune=None if options.depth else finetune)
        write_json(step_dir / "plan.json", result.plan)
        extra = {"prune": _summary(result.report)}
        pruned = result.model
        if options.depth is not None:
            from deepshrink.pruning import drop_branches

            dropped = drop_branches(pruned, data=batches, **options.depth.model_dump())
            write_json(step_dir / "depth.json", dropped.report)
            extra["depth"] = {"dropped": dropped.report["dropped"]}
            pruned = finetune(dropped.model)
        return StepOutput(pruned, history=history, extra=extra, figures=figures)


def _sensitivity_config(options: SensitivityOptions, ctx: RunContext, model: nn.Module, config: PruneConfig,
                        calibration: list, step_dir: Path) -> PruneConfig:
    """Measure the curves (sensitivity.json, saved as they come so a killed run resumes, and .png in
    the step directory), then prune by them."""
    from deepshrink.pruning import plot_sensitivity, sensitivity_config

    step_dir.mkdir(parents=True, exist_ok=True)
    result, config = sensitivity_config(model, ctx.data, config, calibration=calibration, max_drop=options.max_drop,
                                        batches=1 if ctx.smoke else options.batches, ratios=options.ratios,
                                        state=step_dir / "sensitivity.json")
    plot_sensitivity(result, step_dir / "sensitivity.png")
    return config


def _summary(report: dict) -> dict:
    return {k: v for k, v in report.items() if isinstance(v, (int, float, str, bool))}
