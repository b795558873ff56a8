"""`distill(student, teachers, data, config)`: train a student on the foundation engine with a
distillation objective. Multiple teachers are weighted; self-distillation is the unpruned model
passed as the teacher of its pruned copy (adapters bridge the narrower layers)."""

from __future__ import annotations

import copy
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch.nn as nn

from deepshrink.distillation.config import DistillConfig, WeightMode, normalise_teacher_weights
from deepshrink.distillation.objective import DistillObjective
from deepshrink.distillation.plan import build_objective
from deepshrink.distillation.weighting import WeightAllocation, allocate_weights
from deepshrink.errors import ConfigError


@dataclass
class DistillResult:
    """The trained student (the object passed in, in eval mode), the engine's per-epoch history
    (with `hint_epochs`: the hint stage's records first, marked "stage": "hint"),
    the config with `weights` resolved to numbers, the normalised teacher weights, the eq. 7
    measurement when `weights` was 'auto', and the objective (it holds the trained adapters)."""

    model: nn.Module
    history: list[dict[str, Any]]
    config: DistillConfig
    teacher_weights: tuple[float, ...]
    allocation: WeightAllocation | None = None
    objective: DistillObjective | None = field(default=None, repr=False)

    def summary(self) -> dict[str, Any]:
        """JSON-ready record of what was run and what came out."""
        return {
            "config": self.config.model_dump(mode="json"),
            "teacher_weights": list(self.teacher_weights),
            "allocation": self.allocation.as_dict() if self.allocation else None,
            "history": self.history,
        }


def distill(
    student: nn.Module,
    teachers: nn.Module | Sequence[nn.Module],
    data: Any,
    config: DistillConfig | dict[str, Any] | None = None,
    *,
    second: nn.Module | None = None,
    callbacks: Iterable[Any] = (),
    out_dir: str | os.PathLike | None = None,
    resume: bool = False,
) -> DistillResult:
    """Distil `teachers` into `student` on `data` (a DataBundle or a spec string such as 'digits').

    With `weights: auto`, seed 001 eq. 7 sets alpha and beta first: a probe student is trained
    alone, distilled from the teachers (A) and from `second` (B; default: a frozen copy of the
    student as given), see `allocate_weights`. `callbacks`, `out_dir` and `resume` go to the
    engine (checkpoints then also hold the adapters). With `hint_epochs`, the hint stage trains
    first (checkpointing in `out_dir`/hint; its history records carry "stage": "hint")."""
    from deepshrink.metrics.evaluation import resolve_data
    from deepshrink.training import train

    config = DistillConfig.coerce(config)
    teachers = _teacher_list(student, teachers)
    data = resolve_data(data)
    teacher_weights = normalise_teacher_weights(config.teacher_weights, len(teachers))
    allocation = None
    if config.weights is WeightMode.AUTO:
        source = second if second is not None else copy.deepcopy(student)
        allocation = allocate_weights(teachers, source, data, config, template=student)
        config = config.with_updates(weights=allocation.weights)
    objective = build_objective(
        student, teachers, teacher_weights, config, input_size=tuple(data.input_size), num_classes=data.num_classes
    )
    stages = [(objective, config.train, None)]
    if config.hint_epochs:
        hint_train = config.train.model_copy(update={"epochs": config.hint_epochs})
        stages = [(objective.stage(hint=True), hint_train, "hint"), (objective.stage(hint=False), config.train, None)]
    history: list[dict[str, Any]] = []
    try:
        for stage_objective, train_config, name in stages:
            # the hint stage checkpoints in its own sub-directory, so a resume finds each stage's epochs
            stage_dir = out_dir if out_dir is None or name is None else os.path.join(out_dir, name)
            result = train(student, data, train_config, objective=stage_objective, callbacks=callbacks,
                           out_dir=stage_dir, resume=resume)
            history += [{**record, "stage": name} if name else record for record in result.history]
    finally:
        for stage_objective, _, _ in stages:
            stage_objective.close()
    return DistillResult(result.model, history, config, teacher_weights, allocation, objective)


def _teacher_list(student: nn.Module, teachers: nn.Module | Sequence[nn.Module]) -> list[nn.Module]:
    listed = [teachers] if isinstance(teachers, nn.Module) else list(teachers or [])
    if not listed:
        raise ConfigError("distill: needs at least one teacher")
    for index, teacher in enumerate(listed):
        if not isinstance(teacher, nn.Module):
            raise ConfigError(f"teacher {index}: expected an nn.Module, got {type(teacher).__name__}")
        if teacher is student:
            raise ConfigError(
                f"teacher {index} is the student itself; for self-distillation pass the unpruned model "
                "(or a frozen copy) as the teacher"
            )
    return listed
