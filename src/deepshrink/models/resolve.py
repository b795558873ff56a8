"""Turn what a user typed for `--model` (zoo name, `package.module:factory`, or a directory written
by a deepshrink command) plus optional `--weights` into a ready model."""

from __future__ import annotations

import os
from pathlib import Path

import torch.nn as nn

from deepshrink.errors import ConfigError
from deepshrink.models.persist import is_model_dir, load, load_weights
from deepshrink.models.registry import create_model


def resolve_model(
    model: str | os.PathLike,
    *,
    weights: str | os.PathLike | None = None,
    num_classes: int | None = None,
    input_size: tuple[int, int, int] | None = None,
    mean: tuple[float, ...] | None = None,
    std: tuple[float, ...] | None = None,
    options: dict | None = None,
) -> nn.Module:
    """A model directory, or a zoo model / factory built with `options` (e.g. width_mult)."""
    path = Path(model)
    if is_model_dir(path):
        if options:
            raise ConfigError(f"--model {path}: a saved model directory takes no build options (got {sorted(options)})")
        built = load(path)
    elif path.exists() and path.is_dir():
        raise ConfigError(f"--model {path}: directory has no model.json (not written by deepshrink)")
    else:
        built = create_model(str(model), num_classes=num_classes, input_size=input_size, mean=mean, std=std,
                             **(options or {}))
    if weights is not None:
        load_weights(built, weights)
    return built
