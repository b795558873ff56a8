"""Parameters and multiply-accumulates (MACs), total and per layer.

MACs come from PyTorch's FlopCounterMode (convolution, linear/addmm, mm, bmm, baddbmm, attention),
halved: one MAC is one multiply plus one add. Each op is charged to the innermost module running
it, so the per-layer numbers sum exactly to the total."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn as nn
from torch.func import functional_call
from torch.utils.flop_counter import FlopCounterMode

from deepshrink.errors import ModelError
from deepshrink.export.common import eval_mode, first_line, model_name, resolve_input_size

ROOT_KEY = "(model)"  # ops run directly in the top-level forward, outside any submodule
_GLOBAL = "Global"


def count_params(model: nn.Module) -> int:
    """Number of parameters (shared parameters counted once)."""
    return sum(p.numel() for p in model.parameters())


def macs(model: nn.Module, input_size: Sequence[int] | None = None) -> tuple[int, dict[str, int]]:
    """MACs of one forward pass on a single example: `(total, {module name: MACs})`, where the names
    are `named_modules()` paths (e.g. "layer1.0.conv1") and modules doing no MACs are left out."""
    size = resolve_input_size(model, input_size)
    with eval_mode(model):
        try:
            counter = _count_flops(model, size, meta=True)
        except (RuntimeError, NotImplementedError, TypeError):
            # an op without a meta kernel, or a tensor held outside the state dict: compute for real
            try:
                counter = _count_flops(model, size, meta=False)
            except (RuntimeError, ValueError, TypeError, IndexError) as exc:
                shape = (1, *size)
                raise ModelError(f"{model_name(model)} fails on an input of shape {shape}: {first_line(exc)}") from None
    flops = {name: sum(ops.values()) for name, ops in counter.get_flop_counts().items() if name != _GLOBAL}
    own = _own_counts(flops, root=type(model).__name__)
    per_layer = {name: count // 2 for name, count in own.items() if count > 0}
    return counter.get_total_flops() // 2, per_layer


def _count_flops(model: nn.Module, size: tuple[int, ...], *, meta: bool) -> FlopCounterMode:
    """One forward pass under the flop counter; on the meta device only shapes are computed."""
    counter = FlopCounterMode(display=False, depth=None)
    if meta:
        tensors = dict(model.named_parameters()) | dict(model.named_buffers())
        state = {name: torch.empty_like(t, device="meta") for name, t in tensors.items()}
        with torch.inference_mode(), counter:
            functional_call(model, state, (torch.zeros(1, *size, device="meta"),), strict=False)
        return counter
    device = next((p.device for p in model.parameters()), torch.device("cpu"))
    with torch.inference_mode(), counter:
        model(torch.zeros(1, *size, device=device))
    return counter


def _own_counts(totals: dict[str, int], root: str) -> dict[str, int]:
    """Inclusive counts per tracker name -> counts of each module minus its tracked children."""
    paths = {_path(name, root): count for name, count in totals.items()}
    own = dict(paths)
    for path, count in paths.items():
        if path:
            parent = _parent(path, paths)
            own[parent] = own.get(parent, 0) - count
    return {(path or ROOT_KEY): count for path, count in own.items()}


def _path(tracker_name: str, root: str) -> str:
    """ModuleTracker names modules "<RootClass>.a.b"; return "a.b" ("" for the root itself)."""
    if tracker_name == root:
        return ""
    return tracker_name[len(root) + 1 :] if tracker_name.startswith(root + ".") else tracker_name


def _parent(path: str, paths: dict[str, int]) -> str:
    """The nearest ancestor of `path` that the counter saw ("" = the root)."""
    parts = path.split(".")
    for cut in range(len(parts) - 1, 0, -1):
        candidate = ".".join(parts[:cut])
        if candidate in paths:
            return candidate
    return ""
