"""The `prune` step: structured pruning with verified surgery, then optional fine-tuning."""

from __future__ import annotations

import itertools
from pathlib import Path

import torch.nn as nn

from deepshrink.pipeline.context import RunContext
from deepshrink.pipeline.steps.base import Step, StepOutput, register_step
from deepshrink.pruning.config import PruneConfig
from deepshrink.training import TrainConfig


class PruneStepOptions(PruneConfig):
    finetune: TrainConfig | None = None


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

        config = PruneConfig.model_validate(options.model_dump(exclude={"finetune"}))
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
        result = prune(model, config=config, data=batches, finetune=finetune)
        write_json(step_dir / "plan.json", result.plan)
        return StepOutput(result.model, history=history, extra={"prune": _summary(result.report)})


def _summary(report: dict) -> dict:
    return {k: v for k, v in report.items() if isinstance(v, (int, float, str, bool))}
