"""Parameter and MAC counts measured on one forward pass (hooks on convolutions and linear
layers, the only layers doing MACs in the networks pruned here). It equals
`deepshrink.metrics.macs` on CNNs (a test checks) and is ~100x faster, which the budget search,
measuring a candidate per bisection step, needs."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn as nn

from deepshrink.pruning.trace import eval_mode

_COUNTED = (nn.modules.conv._ConvNd, nn.Linear)


def count_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def count_macs(model: nn.Module, inputs: Sequence[torch.Tensor]) -> int:
    """Multiply-accumulates of one example (the first of the example inputs)."""
    total = 0

    def hook(module: nn.Module, args, output: torch.Tensor) -> None:
        nonlocal total
        # Each output element of a conv costs (in / groups) * kernel MACs: one filter's size.
        per_output = module.weight[0].numel() if isinstance(module, nn.modules.conv._ConvNd) else module.in_features
        total += output.numel() * per_output

    handles = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, _COUNTED)]
    try:
        with eval_mode(model), torch.no_grad():
            model(*(x[:1] for x in inputs))
    finally:
        for handle in handles:
            handle.remove()
    return total
