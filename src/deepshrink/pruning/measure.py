"""Parameter and MAC counts of a model for the example inputs' size, through the shared counter
in deepshrink.metrics (one MAC definition across the project)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn as nn

from deepshrink.metrics import count_params as _count_params
from deepshrink.metrics import macs as _macs


def count_params(model: nn.Module) -> int:
    return _count_params(model)


def count_macs(model: nn.Module, inputs: Sequence[torch.Tensor]) -> int:
    """MACs of one example shaped like the first example input."""
    return _macs(model, tuple(inputs[0].shape[1:]))[0]
