"""Verified surgery: the pruned model must compute what the original computes with the pruned
channels zeroed (eval mode, random inputs). Every weighted layer's output is compared in execution
order, so a failure names the first layer that diverges and the group that removed its channels."""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence

import torch
import torch.nn as nn

from deepshrink.errors import VerificationError
from deepshrink.pruning.layer_ops import layer_op
from deepshrink.pruning.plan import zero_removed
from deepshrink.pruning.trace import eval_mode


def relative_error(actual: torch.Tensor, expected: torch.Tensor) -> float:
    diff = (actual.double() - expected.double()).norm()
    return float(diff / (expected.double().norm() + 1e-12)) if diff > 0 else 0.0


def _record(model: nn.Module) -> tuple[list[tuple[str, torch.Tensor]], list]:
    outputs: list[tuple[str, torch.Tensor]] = []
    handles = []
    for name, module in model.named_modules():
        op = layer_op(module)
        if op is not None and op.sizes(module):
            handles.append(module.register_forward_hook(lambda m, a, out, name=name: outputs.append((name, out))))
    return outputs, handles


def _kept_outputs(entry: Mapping, name: str, output: torch.Tensor, module: nn.Module) -> torch.Tensor:
    """The reference layer output restricted to the channels the pruned layer still has."""
    kept = entry.get("out", entry.get("channels"))
    if kept is None:
        return output
    dim = output.dim() - 1 if isinstance(module, nn.Linear) else 1
    return output.index_select(dim, torch.as_tensor(kept, device=output.device))


def flat_tensors(outputs) -> list[torch.Tensor]:
    if isinstance(outputs, torch.Tensor):
        return [outputs]
    if isinstance(outputs, Mapping):
        outputs = list(outputs.values())
    return [t for o in outputs for t in flat_tensors(o)] if isinstance(outputs, (list, tuple)) else []


def verify_surgery(original: nn.Module, pruned: nn.Module, plan: Mapping, inputs: Sequence[torch.Tensor], *,
                   tolerance: float = 1e-4) -> float:
    """Largest relative error between pruned layers and the zeroed reference; raises
    VerificationError naming the layer and group when it exceeds `tolerance`."""
    reference = zero_removed(copy.deepcopy(original), plan)
    ref_outputs, ref_handles = _record(reference)
    new_outputs, new_handles = _record(pruned)
    try:
        with eval_mode(reference), eval_mode(pruned), torch.no_grad():
            expected = reference(*inputs)
            actual = pruned(*inputs)
    finally:
        for handle in (*ref_handles, *new_handles):
            handle.remove()
    layers = plan.get("layers", {})
    modules = dict(reference.named_modules())
    worst = 0.0
    for (name, ref_out), (_, new_out) in zip(ref_outputs, new_outputs):
        expected_layer = _kept_outputs(layers.get(name, {}), name, ref_out, modules[name])
        if expected_layer.shape != new_out.shape:
            _fail(plan, name, f"output shape {tuple(new_out.shape)} != expected {tuple(expected_layer.shape)}")
        error = relative_error(new_out, expected_layer)
        if error > tolerance:
            _fail(plan, name, f"relative error {error:.2e} > {tolerance:.0e}")
        worst = max(worst, error)
    for index, (a, e) in enumerate(zip(flat_tensors(actual), flat_tensors(expected))):
        error = relative_error(a, e) if a.shape == e.shape else float("inf")
        if error > tolerance:
            _fail(plan, f"model output #{index}", f"relative error {error:.2e} > {tolerance:.0e}")
        worst = max(worst, error)
    return worst


def _fail(plan: Mapping, layer: str, what: str) -> None:
    groups = _groups_touching(plan, layer)
    raise VerificationError(
        f"pruning group {groups} failed verification: layer '{layer}' of the pruned model differs from "
        f"the original with those channels zeroed ({what})"
    )


def _groups_touching(plan: Mapping, layer: str) -> str:
    names = [g["name"] for g in plan.get("groups", []) if g["removed"] and layer in g.get("layers", ())]
    if not names:
        names = [g["name"] for g in plan.get("groups", []) if g["removed"]]
    return ", ".join(f"'{n}'" for n in names[:3]) or "'<none>'"
