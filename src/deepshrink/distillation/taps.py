"""Which features a loss reads when the recipe names no module paths.

A probe forward pass records every module's output shape in completion order; from that we pick
the stage outputs (the last module finishing at each spatial resolution, e.g. `layer1..layer3` of
a CIFAR ResNet) and the embedding (the input of the last Linear, i.e. the pooled features)."""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

import torch
import torch.nn as nn

from deepshrink.errors import ConfigError

INPUT_SUFFIX = ":input"


class TapKind(str, Enum):
    """Where a loss looks by default."""

    LOGITS = "logits"  # the model output
    STAGES = "stages"  # every stage output
    MIDDLE_STAGE = "middle_stage"  # the middle stage output (FitNets' hint layer)
    LAST_STAGE = "last_stage"  # the last stage output
    EMBEDDING = "embedding"  # the classifier's input (pooled features)


@dataclass(frozen=True)
class ModelLayout:
    """Per-example output shapes of every module, in the order the modules finish."""

    shapes: dict[str, tuple[int, ...]]
    input_shapes: dict[str, tuple[int, ...]]
    classifier: str | None  # path of the last Linear that ran
    logits: tuple[int, ...]
    blocks: tuple[str, ...] = ()  # top-level children that contain modules (stages, blocks)
    atomic: frozenset[str] = frozenset()  # custom modules with children (residual blocks): not split


def probe_layout(model: nn.Module, input_size: tuple[int, ...]) -> ModelLayout:
    """One eval-mode, no-grad forward of two zero images; the model's mode is restored."""
    shapes: dict[str, tuple[int, ...]] = {}
    input_shapes: dict[str, tuple[int, ...]] = {}
    linear: list[str] = []
    handles = []

    def record(path: str, module: nn.Module):
        def hook(_module, inputs, output):
            if isinstance(output, torch.Tensor):
                shapes.pop(path, None)  # a reused module counts where it last finished
                shapes[path] = tuple(output.shape[1:])
            if inputs and isinstance(inputs[0], torch.Tensor):
                input_shapes[path] = tuple(inputs[0].shape[1:])
            if isinstance(module, nn.Linear):
                linear.append(path)

        return hook

    for path, module in model.named_modules():
        if path:
            handles.append(module.register_forward_hook(record(path, module)))
    was_training = model.training
    try:
        param = next(iter(model.parameters()), None)
        device = param.device if param is not None else torch.device("cpu")
        model.eval()
        with torch.no_grad():
            out = model(torch.zeros(2, *input_size, device=device))
    finally:
        model.train(was_training)
        for handle in handles:
            handle.remove()
    if not isinstance(out, torch.Tensor) or out.dim() != 2:
        raise ConfigError(
            f"{type(model).__name__}: distillation needs a classifier returning [batch, classes] logits, "
            f"got {type(out).__name__}{'' if not isinstance(out, torch.Tensor) else list(out.shape)}"
        )
    blocks = tuple(name for name, child in model.named_children() if any(True for _ in child.children()))
    containers = (nn.Sequential, nn.ModuleList, nn.ModuleDict)
    atomic = frozenset(
        path
        for path, m in model.named_modules()
        if path and not isinstance(m, containers) and any(True for _ in m.children())
    )
    return ModelLayout(
        shapes=shapes,
        input_shapes=input_shapes,
        classifier=linear[-1] if linear else None,
        logits=tuple(out.shape[1:]),
        blocks=blocks,
        atomic=atomic,
    )


def stage_paths(layout: ModelLayout) -> list[str]:
    """The last module to finish at each spatial resolution, in order of appearance. A model that
    never changes resolution (e.g. digits_cnn) uses its top-level blocks with map outputs instead."""
    last_at: dict[tuple[int, int], str] = {}
    for path, shape in layout.shapes.items():
        if len(shape) == 3 and not _inside_resizing_block(layout, path, shape[1:]):
            last_at.pop(shape[1:], None)
            last_at[shape[1:]] = path
    stages = list(last_at.values())
    if len(stages) < 2:
        blocks = [name for name in layout.blocks if len(layout.shapes.get(name, ())) == 3]
        stages = blocks if len(blocks) > len(stages) else stages
    return stages


def _inside_resizing_block(layout: ModelLayout, path: str, size: tuple[int, ...]) -> bool:
    """True for the inner layers of a residual-style block that changes resolution (e.g. the
    expansion conv of a strided MobileNet block): their output is not a stage boundary."""
    parts = path.split(".")
    for depth in range(1, len(parts)):
        parent = ".".join(parts[:depth])
        if parent in layout.atomic and layout.shapes.get(parent, ())[1:] != size:
            return True
    return False


def default_taps(layout: ModelLayout, kind: TapKind, model_name: str) -> list[str]:
    """Module paths (`name` for outputs, `name:input` for inputs) for a tap kind; [] for logits."""
    if kind is TapKind.LOGITS:
        return []
    if kind is TapKind.EMBEDDING:
        if layout.classifier is None:
            raise ConfigError(f"{model_name}: no nn.Linear classifier found; name the embedding tap explicitly")
        return [layout.classifier + INPUT_SUFFIX]
    stages = stage_paths(layout)
    if not stages:
        raise ConfigError(f"{model_name}: no module outputs a [C, H, W] feature map; name the feature taps explicitly")
    if kind is TapKind.STAGES:
        return stages
    if kind is TapKind.MIDDLE_STAGE:
        return [stages[len(stages) // 2]]
    return [stages[-1]]


def tap_shape(layout: ModelLayout, path: str) -> tuple[int, ...]:
    """Per-example shape of what a tap captures (a module's output, or its input for `name:input`)."""
    if path.endswith(INPUT_SUFFIX):
        name, recorded = path[: -len(INPUT_SUFFIX)], layout.input_shapes
    else:
        name, recorded = path, layout.shapes
    if name not in recorded:
        raise ConfigError(
            f"tap '{path}': the module did not run (or gave no tensor) in a forward pass, so it has no features"
        )
    return recorded[name]
