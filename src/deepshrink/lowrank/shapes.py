"""Spatial sizes each layer sees in one forward pass: MAC formulas need the input and output
height/width of every convolution (and the number of positions a linear layer is applied at)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import torch
import torch.nn as nn

from deepshrink.errors import ModelError
from deepshrink.export.common import eval_mode


@dataclass(frozen=True)
class LayerShape:
    in_hw: tuple[int, int]  # for a linear layer: (positions, 1)
    out_hw: tuple[int, int]

    @property
    def in_positions(self) -> int:
        return self.in_hw[0] * self.in_hw[1]

    @property
    def out_positions(self) -> int:
        return self.out_hw[0] * self.out_hw[1]


def trace_shapes(model: nn.Module, names: Iterable[str], input_size: tuple[int, ...]) -> dict[str, LayerShape]:
    """Run one example through `model` and record the shape seen by each named layer."""
    wanted = list(names)
    shapes: dict[str, LayerShape] = {}
    handles = []
    for name in wanted:
        module = model.get_submodule(name)
        handles.append(module.register_forward_hook(_recorder(name, module, shapes)))
    device = next((p.device for p in model.parameters()), torch.device("cpu"))
    try:
        with eval_mode(model), torch.no_grad():
            model(torch.zeros(1, *input_size, device=device))
    finally:
        for handle in handles:
            handle.remove()
    missing = [n for n in wanted if n not in shapes]
    if missing:
        raise ModelError(f"layer '{missing[0]}' is not called in the forward pass, so its MACs are unknown")
    return shapes


def _recorder(name: str, module: nn.Module, shapes: dict[str, LayerShape]):
    def hook(_module: nn.Module, inputs: tuple, output: torch.Tensor) -> None:
        if isinstance(module, nn.Linear):
            positions = output.numel() // (output.shape[0] * module.out_features)
            shapes[name] = LayerShape((positions, 1), (positions, 1))
        else:
            shapes[name] = LayerShape(tuple(inputs[0].shape[-2:]), tuple(output.shape[-2:]))

    return hook
