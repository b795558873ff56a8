"""What every pipeline step is: typed options, a pre-run check, and a run that returns a new model."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import torch.nn as nn
from pydantic import BaseModel

from deepshrink.registry import Registry

if TYPE_CHECKING:
    from deepshrink.pipeline.context import RunContext
    from deepshrink.pipeline.recipe import Recipe


@dataclass
class StepOutput:
    model: nn.Module
    history: list[dict[str, Any]] = field(default_factory=list)
    # A deployed artifact (e.g. an int8 ONNX file): its bytes, latency and accuracy are measured.
    onnx_path: Path | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    # Plots the step drew (caption -> file): the report shows them after its own.
    figures: dict[str, Path] = field(default_factory=dict)


class Step:
    """Subclasses set `Options` and implement `run`; `check` validates files before any work."""

    Options: ClassVar[type[BaseModel]]
    measures: ClassVar[bool] = True  # measure the model after this step (evaluate/profile)

    def check(self, options: BaseModel, recipe: "Recipe", *, source: str, base_dir: Path | None) -> None:
        return None

    def run(self, options: BaseModel, ctx: "RunContext", model: nn.Module, step_dir: Path) -> StepOutput:
        raise TypeError(f"{type(self).__name__} must implement run()")


STEPS: Registry[Step] = Registry("pipeline step")


def register_step(name: str):
    def decorator(cls: type[Step]) -> type[Step]:
        STEPS.register(name)(cls())
        return cls

    return decorator
