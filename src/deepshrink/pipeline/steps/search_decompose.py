"""The `search` step (per-layer pruning ratios under a MACs/params/bytes/latency budget) and the
`decompose` step (low-rank factorisation, recovered by distillation from the model before it)."""

from __future__ import annotations

from pathlib import Path

import torch.nn as nn
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from deepshrink.lowrank.config import Allocation, Budget, DecomposeConfig, Method
from deepshrink.nas.search.config import SearchConfig
from deepshrink.pipeline.context import RunContext
from deepshrink.pipeline.steps.base import Step, StepOutput, register_step
from deepshrink.training import TrainConfig


@register_step("search")
class SearchStep(Step):
    Options = SearchConfig

    def run(self, options: SearchConfig, ctx: RunContext, model: nn.Module, step_dir: Path) -> StepOutput:
        from deepshrink.nas import search

        config = options
        if ctx.smoke:
            config = SearchConfig(**{**options.model_dump(exclude={"finetune"}), "population": 4, "generations": 0,
                                     "evolution": {**options.evolution.model_dump(), "elite": 1},
                                     "progress": False, "finetune": ctx.train_config(options.finetune)})
        result = search(model, ctx.data, config, out_dir=step_dir / "search", resume=True)
        return StepOutput(result.model, history=result.finetune_history,
                          extra={"search": {"plan": result.plan, "budget": result.budget}},
                          figures={"search: proxy top-1 of every candidate, Pareto front":
                                   step_dir / "search" / "pareto.png"})


class DecomposeStepOptions(BaseModel):
    """The keyword form of `decompose` (exactly one of ratio, ranks, energy) plus recovery training."""

    model_config = ConfigDict(extra="forbid")

    method: Method = Method.TUCKER
    ratio: float | None = Field(None, gt=1, description="make the model this many times smaller")
    ranks: dict[str, int | tuple[int, int]] | Literal["vbmf"] | None = None
    energy: float | None = Field(None, gt=0, le=1)
    budget: Budget | None = None
    allocation: Allocation | None = None
    exclude: list[str] | None = None
    finetune: TrainConfig | None = None

    def decompose_config(self) -> DecomposeConfig:
        from deepshrink.lowrank.api import build_config

        options = self.model_dump(exclude={"finetune", "method"})
        return build_config(method=self.method.value, **{k: (v.value if hasattr(v, "value") else v)
                                                          for k, v in options.items()})


@register_step("decompose")
class DecomposeStep(Step):
    Options = DecomposeStepOptions

    def check(self, options: DecomposeStepOptions, recipe, *, source: str, base_dir) -> None:
        options.decompose_config()  # exactly one rank rule, valid combination

    def run(self, options: DecomposeStepOptions, ctx: RunContext, model: nn.Module, step_dir: Path) -> StepOutput:
        from deepshrink.lowrank import decompose
        from deepshrink.lowrank.finetune import finetune, recovery_config

        decomposed = decompose(model, options.decompose_config())
        history: list[dict] = []
        if options.finetune is not None and options.finetune.epochs > 0:
            # The recovery recipe's defaults (small lr, warm-up: CP collapses at lr 0.01) under the
            # fields the recipe sets.
            given = options.finetune.model_dump(exclude_unset=True)
            if given.get("optimizer", "sgd") != "sgd":
                given.setdefault("nesterov", False)  # the recovery default is Nesterov SGD
            recovery = recovery_config(given.pop("epochs", options.finetune.epochs), **given)
            recovery = recovery.with_updates(train=ctx.train_config(recovery.train))
            result = finetune(decomposed, model.eval(), ctx.data, recovery, out_dir=step_dir / "train", resume=True)
            decomposed, history = result.model, result.history
        return StepOutput(decomposed, history=history)
