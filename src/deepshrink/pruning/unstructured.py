"""Unstructured pruning: magnitude masks (layer-wise or one global threshold), N:M patterns (2:4),
the gradual AGP schedule (Zhu & Gupta 2017) as a training callback, and the sparse storage size.
Zeros give no dense speed-up, so the report states what they save on disk: a bitmask plus the
non-zero values."""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn as nn

from deepshrink.errors import ConfigError
from deepshrink.models.spec import TRANSFORMS, derive
from deepshrink.pruning import primitives
from deepshrink.pruning.callbacks import MaskHolder
from deepshrink.pruning.config import Scope, UnstructuredConfig, parse_config

_WEIGHTED = (nn.modules.conv._ConvNd, nn.Linear)


def target_weights(model: nn.Module, cfg: UnstructuredConfig) -> dict[str, torch.Tensor]:
    """`{parameter name: weight}` of the convolutions and linear layers selected for sparsity:
    all of them minus the protected ones (first convolution and classifier by default)."""
    layers = [(name, m) for name, m in model.named_modules() if isinstance(m, _WEIGHTED)]
    if not layers:
        raise ConfigError(f"{type(model).__name__} has no convolution or linear layer to sparsify")
    protected = cfg.protect.resolve(model, what="protected layers") if not cfg.protect.is_empty() else set()
    if cfg.protect_ends:
        protected |= {layers[0][0], layers[-1][0]}
    chosen = {f"{name}.weight": m.weight for name, m in layers
              if not any(name == p or name.startswith(p + ".") for p in protected)}
    if not chosen:
        raise ConfigError("every convolution and linear layer is protected: nothing to sparsify")
    return chosen


def sparsity_masks(model: nn.Module, config: UnstructuredConfig | dict | None = None, **options: Any) -> dict[str, torch.Tensor]:
    """Boolean keep-masks for the selected weights."""
    cfg = parse_config(UnstructuredConfig, config, **options)
    weights = target_weights(model, cfg)
    if cfg.n_m is not None:
        n, m = cfg.n_m
        masks = {}
        for name, w in weights.items():
            try:
                masks[name] = primitives.n_m_mask(w, n, m)
            except ValueError as exc:
                raise ConfigError(f"N:M {n}:{m} on '{name}': {exc} (protect this layer)") from None
        return masks
    if cfg.scope is Scope.GLOBAL:
        threshold = primitives.magnitude_threshold(list(weights.values()), cfg.sparsity)
        return {name: primitives.threshold_mask(w, threshold) for name, w in weights.items()}
    return {name: primitives.magnitude_mask(w, cfg.sparsity) for name, w in weights.items()}


def storage_report(model: nn.Module, names: list[str] | None = None) -> dict[str, Any]:
    """Dense bytes vs bitmask + non-zero values, per weight and in total (FP32 values)."""
    params = dict(model.named_parameters())
    names = names if names is not None else [n for n, p in params.items() if p.dim() > 1]
    layers = {}
    for name in names:
        w = params[name].detach()
        layers[name] = {"numel": w.numel(), "sparsity": 1 - int(torch.count_nonzero(w)) / w.numel(),
                        "dense_bytes": w.numel() * w.element_size(), "sparse_bytes": primitives.sparse_storage_bytes(w)}
    dense = sum(p.numel() * p.element_size() for p in params.values())
    saved = sum(v["dense_bytes"] - v["sparse_bytes"] for v in layers.values())
    zeros = sum(v["numel"] * v["sparsity"] for v in layers.values())
    return {"layers": layers, "sparsity": zeros / max(1, sum(v["numel"] for v in layers.values())),
            "dense_bytes": dense, "sparse_bytes": dense - saved}


@dataclass
class SparsityResult:
    model: nn.Module  # a copy with the pruned weights zeroed
    masks: dict[str, torch.Tensor]  # hold them through fine-tuning with MaskHolder(masks)
    report: dict[str, Any] = field(default_factory=dict)


def sparsify(model: nn.Module, config: UnstructuredConfig | dict | None = None, **options: Any) -> SparsityResult:
    """Zero weights by magnitude (or an N:M pattern) on a copy of `model`."""
    cfg = parse_config(UnstructuredConfig, config, **options)
    masks = sparsity_masks(model, cfg)
    new = copy.deepcopy(model)
    MaskHolder(masks).apply_(new)
    report = storage_report(new, list(masks))
    plan = {"sparsity": cfg.sparsity if cfg.n_m is None else 1 - cfg.n_m[0] / cfg.n_m[1],
            "pattern": "magnitude" if cfg.n_m is None else f"{cfg.n_m[0]}:{cfg.n_m[1]}",
            "scope": cfg.scope.value, "layers": sorted(masks)}
    return SparsityResult(derive(model, new, "sparsity", plan), masks, report)


@TRANSFORMS.register("sparsity")
def replay_sparsity(model: nn.Module, plan: dict) -> nn.Module:
    """Shapes do not change: the zeros live in the saved weights."""
    return model


def agp_sparsity(epoch: int, final: float, start: int, end: int, initial: float = 0.0) -> float:
    """Zhu & Gupta's cubic schedule: s_t = s_f + (s_i - s_f) (1 - (t - t0) / (t1 - t0))^3."""
    if epoch <= start:
        return initial if epoch == start else 0.0
    if epoch >= end:
        return final
    progress = (epoch - start) / (end - start)
    return final + (initial - final) * (1 - progress) ** 3


class GradualPruning(MaskHolder):
    """AGP as a callback: at each epoch start the sparsity follows the cubic schedule from
    `start_epoch` to `end_epoch`; masks are recomputed by magnitude then held after every step."""

    def __init__(self, config: UnstructuredConfig | dict | None = None, *, start_epoch: int = 0,
                 end_epoch: int = 10, initial_sparsity: float = 0.0, **options: Any) -> None:
        super().__init__({})
        self.config = parse_config(UnstructuredConfig, config, **options)
        if self.config.n_m is not None:
            raise ConfigError("gradual pruning ramps a magnitude sparsity; use sparsify() for N:M patterns")
        if not 0 <= start_epoch < end_epoch:
            raise ConfigError(f"gradual pruning needs 0 <= start_epoch < end_epoch, got {start_epoch}, {end_epoch}")
        self.start, self.end, self.initial = start_epoch, end_epoch, initial_sparsity
        self.current = 0.0

    def on_epoch_start(self, state: Any) -> None:
        self.current = agp_sparsity(state.epoch, self.config.sparsity, self.start, self.end, self.initial)
        if self.current > 0:
            self.masks = sparsity_masks(state.model, self.config.model_copy(update={"sparsity": self.current}))
            self.apply_(state.model)

    def on_train_start(self, state: Any) -> None:
        return None  # masks come with the first epoch

    def state_dict(self) -> dict:
        return {**super().state_dict(), "current": self.current}

    def load_state_dict(self, state: dict) -> None:
        super().load_state_dict(state)
        self.current = float(state.get("current", 0.0))
