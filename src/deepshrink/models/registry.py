"""The model zoo registry and `create_model`.

Each architecture registers a factory `(num_classes=..., **kwargs) -> nn.Module` with metadata:
`input_size` (C, H, W), `mean`/`std` normalisation, `num_classes`, and `params` (the published
parameter count at the default number of classes, checked by the registry-driven tests)."""

from __future__ import annotations

import importlib
from typing import Any, Callable

import torch.nn as nn

from deepshrink.errors import ConfigError, ModelError
from deepshrink.models.spec import ModelSpec, attach_spec
from deepshrink.registry import Registry

MODELS: Registry[Callable[..., nn.Module]] = Registry("model")

CIFAR_MEAN = (0.485, 0.456, 0.406)  # the convention of the CIFAR ResNet checkpoints in ../shared
CIFAR_STD = (0.229, 0.224, 0.225)


def _import_zoo() -> None:
    importlib.import_module("deepshrink.models.zoo")


def list_models() -> list[str]:
    _import_zoo()
    return MODELS.names()


def resolve_factory(arch: str) -> tuple[Callable[..., nn.Module], dict[str, Any]]:
    """A zoo name or `package.module:factory` -> (factory, metadata)."""
    if ":" in arch:
        module_name, _, attr = arch.partition(":")
        try:
            module = importlib.import_module(module_name)
        except ImportError as exc:
            raise ConfigError(f"model '{arch}': cannot import module '{module_name}' ({exc})") from None
        factory = getattr(module, attr, None)
        if not callable(factory):
            raise ConfigError(f"model '{arch}': '{module_name}' has no callable '{attr}'")
        return factory, {}
    _import_zoo()
    return MODELS.get(arch), MODELS.meta(arch)


def create_model(
    name: str,
    *,
    num_classes: int | None = None,
    input_size: tuple[int, int, int] | None = None,
    mean: tuple[float, ...] | None = None,
    std: tuple[float, ...] | None = None,
    **kwargs: Any,
) -> nn.Module:
    """Build a zoo model (or `package.module:factory`) and attach the spec needed to save it."""
    factory, meta = resolve_factory(name)
    classes = num_classes if num_classes is not None else meta.get("num_classes", 10)
    try:
        model = factory(num_classes=classes, **kwargs)
    except TypeError as exc:
        raise ConfigError(f"model '{name}': bad arguments {sorted(kwargs)} ({exc})") from None
    if not isinstance(model, nn.Module):
        raise ModelError(f"model '{name}': factory returned {type(model).__name__}, not an nn.Module")
    spec = ModelSpec(
        arch=name,
        kwargs=dict(kwargs),
        num_classes=classes,
        input_size=tuple(input_size or meta.get("input_size", (3, 32, 32))),
        mean=tuple(mean or meta.get("mean", CIFAR_MEAN)),
        std=tuple(std or meta.get("std", CIFAR_STD)),
    )
    return attach_spec(model, spec)
