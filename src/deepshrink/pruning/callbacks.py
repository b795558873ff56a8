"""Training callbacks for the deepshrink.training engine: soft filter pruning (SFP), the network
slimming L1 regulariser on BatchNorm scales, and masks held through fine-tuning (with the AGP
gradual schedule in unstructured.py)."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn as nn

from deepshrink.errors import ConfigError
from deepshrink.pruning.api import PruneResult, finish, graph_for, scores_for
from deepshrink.pruning.config import PruneConfig, parse_config
from deepshrink.pruning.graph import DependencyGraph
from deepshrink.pruning.importance import Batches
from deepshrink.pruning.layer_ops import layer_op
from deepshrink.pruning.plan import make_plan
from deepshrink.pruning.policy import choose
from deepshrink.pruning.selection import LayerSelection
from deepshrink.pruning.trace import device_of, example_inputs_for


class SoftFilterPruning:
    """SFP (He et al. 2018), FPGM's own training scheme: after every epoch, zero the filters the
    criterion would prune and let them regrow during the next epoch; `finalize` then removes the
    units zeroed last (verified surgery) and returns the smaller model."""

    def __init__(self, example_inputs=None, *, config: PruneConfig | dict | None = None,
                 data: Batches | None = None, **options: Any) -> None:
        self.config = parse_config(PruneConfig, config, **options)
        if self.config.budget is not None:
            raise ConfigError("soft filter pruning takes a ratio, not a budget")
        self.example_inputs, self.data = example_inputs, data
        self.removal: dict[str, list[int]] | None = None
        self._graph: tuple[int, DependencyGraph] | None = None

    def _graph_of(self, model: nn.Module) -> tuple[DependencyGraph, tuple[torch.Tensor, ...]]:
        inputs = tuple(x.to(device_of(model)) for x in example_inputs_for(model, self.example_inputs))
        if self._graph is None or self._graph[0] != id(model):  # structure is fixed during training
            self._graph = (id(model), graph_for(model, inputs, self.config))
        return self._graph[1], inputs

    def select(self, model: nn.Module) -> dict[str, list[int]]:
        graph, _ = self._graph_of(model)
        scores = scores_for(graph, self.config, self.data)
        return choose(graph, scores, policy=self.config.policy, ratio=self.config.ratio,
                      ratios=dict(self.config.ratios), round_to=self.config.round_to)

    def zero_(self, model: nn.Module) -> dict[str, list[int]]:
        """In place: zero the filters (producer rows and biases) of the selected units."""
        self.removal = self.select(model)
        graph, _ = self._graph_of(model)
        plan = make_plan(graph, self.removal)
        modules = dict(model.named_modules())
        for path, entry in plan["layers"].items():
            module = modules.get(path)
            op = layer_op(module) if module is not None else None
            if op is not None and "out" in entry:
                removed = sorted(set(range(op.sizes(module)["out"])) - set(entry["out"]))
                op.zero(module, {"out": removed})
        return self.removal

    def on_epoch_end(self, state: Any) -> None:
        self.zero_(state.model)

    def finalize(self, model: nn.Module) -> PruneResult:
        """Remove the units zeroed at the last epoch (selected now if no epoch ran)."""
        removal = self.removal if self.removal is not None else self.select(model)
        graph, inputs = self._graph_of(model)
        result = finish(model, inputs, graph, make_plan(graph, removal), self.config)
        self._graph = None
        return result

    def state_dict(self) -> dict:
        return {"removal": self.removal}

    def load_state_dict(self, state: dict) -> None:
        self.removal = state.get("removal")


class SlimmingRegularizer:
    """Network slimming (Liu et al. 2017): adds `strength * sum |gamma|` over the BatchNorm scales
    to the loss so unimportant channels' scales shrink towards zero (then prune with bn_scale)."""

    def __init__(self, strength: float = 1e-4, layers: LayerSelection | None = None) -> None:
        if not strength > 0:
            raise ConfigError(f"slimming strength must be > 0, got {strength}")
        self.strength, self.layers = float(strength), layers
        self._scales: tuple[int, list[torch.Tensor]] | None = None

    def scales(self, model: nn.Module) -> list[torch.Tensor]:
        if self._scales is None or self._scales[0] != id(model):
            chosen = self.layers.resolve(model, what="slimming layers") if self.layers else None
            scales = [m.weight for name, m in model.named_modules()
                      if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.weight is not None
                      and (chosen is None or name in chosen)]
            if not scales:
                raise ConfigError(f"network slimming: {type(model).__name__} has no BatchNorm scales to regularise")
            self._scales = (id(model), scales)
        return self._scales[1]

    def extra_loss(self, state: Any) -> torch.Tensor:
        return self.strength * sum(w.abs().sum() for w in self.scales(state.model))


class MaskHolder:
    """Keeps pruned weights at zero through fine-tuning: masks `{parameter name: bool tensor}` are
    re-applied after every optimiser step (and saved in checkpoints for resume)."""

    def __init__(self, masks: dict[str, torch.Tensor]) -> None:
        self.masks = dict(masks)

    def apply_(self, model: nn.Module) -> None:
        params = dict(model.named_parameters())
        missing = [name for name in self.masks if name not in params]
        if missing:
            raise ConfigError(f"mask for parameter '{missing[0]}', which {type(model).__name__} does not have")
        with torch.no_grad():
            for name, mask in self.masks.items():
                params[name].mul_(mask.to(params[name].device, params[name].dtype))

    def on_train_start(self, state: Any) -> None:
        self.apply_(state.model)

    def on_step_end(self, state: Any) -> None:
        self.apply_(state.model)

    def state_dict(self) -> dict:
        return {"masks": {k: v.cpu() for k, v in self.masks.items()}}

    def load_state_dict(self, state: dict) -> None:
        self.masks = dict(state["masks"])
