"""Parameter and MAC counts measured on a model run (forward hooks on convolutions and linear
layers), used by the budget search and the pruning report."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn as nn

from deepshrink.pruning.trace import eval_mode


def count_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def count_macs(model: nn.Module, inputs: Sequence[torch.Tensor]) -> int:
    """Multiply-accumulates of one example (the batch's total divided by its size)."""
    total = 0

    def hook(module: nn.Module, args, output: torch.Tensor) -> None:
        nonlocal total
        if isinstance(module, nn.modules.conv._ConvNd):
            per_output = module.weight[0].numel()  # (in / groups) * kernel elements
        else:
            per_output = module.in_features
        total += output.numel() * per_output

    handles = [
        m.register_forward_hook(hook) for m in model.modules() if isinstance(m, (nn.modules.conv._ConvNd, nn.Linear))
    ]
    try:
        with eval_mode(model), torch.no_grad():
            model(*inputs)
    finally:
        for handle in handles:
            handle.remove()
    return total // max(1, inputs[0].shape[0])
