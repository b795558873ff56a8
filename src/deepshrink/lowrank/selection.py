"""Which layers get decomposed: every Conv2d (groups=1) and Linear, minus the excluded ones.
Exclusions are module names or fnmatch patterns; one that matches no module is an error (a typo
must not silently decompose the layer it meant to protect)."""

from __future__ import annotations

import fnmatch
from collections.abc import Iterable

import torch.nn as nn

from deepshrink.errors import ConfigError, close_matches
from deepshrink.lowrank.methods import is_decomposable


def decomposable_layers(model: nn.Module) -> dict[str, nn.Module]:
    return {name: m for name, m in model.named_modules() if name and is_decomposable(name, m)}


def default_exclude(model: nn.Module) -> tuple[str, ...]:
    """The first convolution (it sees raw pixels with 1-3 channels) and the last linear layer
    (the classifier): the layers decomposition hurts most and saves least on."""
    layers = [(n, m) for n, m in model.named_modules() if n]
    first_conv = next((n for n, m in layers if isinstance(m, nn.Conv2d)), None)
    classifier = next((n for n, m in reversed(layers) if isinstance(m, nn.Linear)), None)
    return tuple(n for n in (first_conv, classifier) if n is not None)


def match_names(model: nn.Module, patterns: Iterable[str], field: str) -> set[str]:
    """Module names matched by `patterns`; ConfigError naming the first pattern matching none."""
    names = [n for n, _ in model.named_modules() if n]
    matched: set[str] = set()
    for pattern in patterns:
        hits = {n for n in names if n == pattern or fnmatch.fnmatchcase(n, pattern)}
        if not hits:
            raise ConfigError(f"{field}: '{pattern}' matches no layer of the model{close_matches(pattern, names)}")
        matched |= hits
    return matched


def require_layer(model: nn.Module, name: str, field: str) -> nn.Module:
    names = [n for n, _ in model.named_modules() if n]
    if name not in names:
        raise ConfigError(f"{field}: no layer named '{name}'{close_matches(name, names)}")
    return model.get_submodule(name)


def set_module(model: nn.Module, name: str, module: nn.Module) -> None:
    parent_name, _, child = name.rpartition(".")
    setattr(model.get_submodule(parent_name) if parent_name else model, child, module)
