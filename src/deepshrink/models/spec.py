"""What it takes to rebuild a model without pickling it: the architecture, its kwargs, the data
conventions it expects, and the ordered list of transforms (pruning plans, decompositions,
quantisation) that were applied to it. Each family registers a replay function in TRANSFORMS."""

from __future__ import annotations

import copy
import importlib
from typing import Any, Callable

import torch.nn as nn
from pydantic import BaseModel, ConfigDict, Field

from deepshrink.errors import ModelError
from deepshrink.registry import Registry

SPEC_ATTRIBUTE = "deepshrink_spec"

# kind -> replay(model, plan: dict) -> new model. Families register on import.
TRANSFORMS: Registry[Callable[[nn.Module, dict], nn.Module]] = Registry("model transform")
_FAMILY_MODULES = (
    "deepshrink.pruning",
    "deepshrink.lowrank",
    "deepshrink.quantization",
    "deepshrink.nas",
)


class ModelSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    arch: str = Field(description="zoo name or package.module:factory")
    kwargs: dict[str, Any] = Field(default_factory=dict)
    num_classes: int
    input_size: tuple[int, int, int] = Field(description="C, H, W of one example")
    mean: tuple[float, ...] = (0.0,)
    std: tuple[float, ...] = (1.0,)
    transforms: list[dict[str, Any]] = Field(default_factory=list)

    def with_transform(self, kind: str, plan: dict[str, Any]) -> "ModelSpec":
        return self.model_copy(update={"transforms": [*self.transforms, {"kind": kind, "plan": plan}]})


def attach_spec(model: nn.Module, spec: ModelSpec) -> nn.Module:
    object.__setattr__(model, SPEC_ATTRIBUTE, spec)
    return model


def spec_of(model: nn.Module) -> ModelSpec | None:
    return getattr(model, SPEC_ATTRIBUTE, None)


def require_spec(model: nn.Module) -> ModelSpec:
    spec = spec_of(model)
    if spec is None:
        raise ModelError(
            f"{type(model).__name__} has no DeepShrink spec: build it with deepshrink.create_model or "
            "deepshrink.load, or attach one with deepshrink.models.attach_spec(model, ModelSpec(...))"
        )
    return spec


def derive(model: nn.Module, new_model: nn.Module, kind: str, plan: dict[str, Any]) -> nn.Module:
    """Give `new_model` the spec of `model` plus one transform, so it can be saved and replayed."""
    spec = spec_of(model)
    if spec is not None:
        attach_spec(new_model, spec.with_transform(kind, copy.deepcopy(plan)))
    return new_model


def replay(model: nn.Module, transforms: list[dict[str, Any]]) -> nn.Module:
    for module_name in _FAMILY_MODULES:
        try:
            importlib.import_module(module_name)
        except ImportError as exc:  # a family not built yet must not break loading of others
            if exc.name != module_name:
                raise
    for index, step in enumerate(transforms):
        kind = step.get("kind")
        if kind not in TRANSFORMS:
            raise ModelError(f"transform #{index} has unknown kind '{kind}'; known: {', '.join(TRANSFORMS.names())}")
        model = TRANSFORMS.get(kind)(model, step.get("plan", {}))
    return model
