"""Small helpers shared by export and metrics: naming a model in messages, resolving the input
size from its spec, and running a model in eval mode without changing the caller's flags."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence

import torch.nn as nn

from deepshrink.errors import ConfigError, ModelError
from deepshrink.models.spec import spec_of


def model_name(model: nn.Module) -> str:
    """The zoo name when the model has a spec, else its class name."""
    spec = spec_of(model)
    return spec.arch if spec is not None else type(model).__name__


def resolve_input_size(model: nn.Module, input_size: Sequence[int] | None) -> tuple[int, ...]:
    """`input_size` (C, H, W, no batch) as a tuple, defaulting to the model's spec."""
    if input_size is None:
        spec = spec_of(model)
        if spec is None:
            raise ModelError(
                f"{model_name(model)} has no DeepShrink spec, so its input size is unknown: pass input_size=(C, H, W)"
            )
        input_size = spec.input_size
    size = tuple(input_size)
    if not size or not all(isinstance(d, int) and not isinstance(d, bool) and d > 0 for d in size):
        raise ConfigError(
            f"input_size must be positive integers without the batch axis, e.g. (3, 32, 32); got {input_size!r}"
        )
    return size


def check_batch(batch: int, field: str = "batch") -> int:
    if not isinstance(batch, int) or isinstance(batch, bool) or batch < 1:
        raise ConfigError(f"{field} must be a positive integer, got {batch!r}")
    return batch


@contextlib.contextmanager
def eval_mode(model: nn.Module) -> Iterator[nn.Module]:
    """Put every submodule in eval mode for the block, then restore each one's own flag."""
    flags = [(module, module.training) for module in model.modules()]
    model.eval()
    try:
        yield model
    finally:
        for module, training in flags:
            module.training = training


def first_line(exc: BaseException) -> str:
    """The first line of an exception's message, for one-line error reports."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
