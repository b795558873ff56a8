"""The peers a user would reach for today, glued the way their documentation shows: Torch-Pruning
(an optional `bench` extra) for structured pruning."""

from __future__ import annotations

import copy

import torch


def torch_pruning_prune(baseline: torch.nn.Module, criterion: str, calibration, *, full_ratio: float,
                        intra_ratio: float = 0.5) -> tuple[torch.nn.Module, dict]:
    """Torch-Pruning with the same criterion on a CIFAR ResNet: full pruning at `full_ratio` first
    (records its error on the option-A shortcuts), then its workaround: only the first
    convolution of each block, at `intra_ratio`."""
    import torch_pruning as tp

    importance = {"fpgm": lambda: tp.importance.FPGMImportance(), "l1": lambda: tp.importance.MagnitudeImportance(p=1),
                  "taylor": lambda: tp.importance.TaylorImportance(), "bn": lambda: tp.importance.BNScaleImportance()}
    example = torch.randn(1, 3, 32, 32)

    def run(ignored_of, ratio: float) -> torch.nn.Module:
        model = copy.deepcopy(baseline).eval()
        pruner = tp.pruner.MetaPruner(model, example, importance=importance[criterion](), pruning_ratio=ratio,
                                      ignored_layers=ignored_of(model), round_to=8)
        if criterion == "taylor":
            model.zero_grad()
            for images, labels in calibration:
                torch.nn.functional.cross_entropy(model(images), labels).backward()
        pruner.step()
        model(example)  # a mis-pruned model fails here
        return model

    extra: dict = {}
    try:
        run(lambda m: [m.linear], full_ratio)
        extra["tp_full_error"] = None
    except Exception as exc:  # whatever Torch-Pruning raises is the finding we record
        extra["tp_full_error"] = f"{type(exc).__name__}: {str(exc).splitlines()[0]}"

    def intra_only(model):
        keep = [model.conv1, model.linear]
        keep += [m for name, m in model.named_modules() if name.endswith(".conv2")]
        return keep

    model = run(intra_only, intra_ratio)
    extra["tp_scope"] = "intra-block (workaround)"
    return model, extra
