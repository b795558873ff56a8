"""Data-driven criteria: first-order Taylor (gradients from a few batches) and HRank (average
rank of feature maps, captured by running the traced graph). Both compute their per-layer
statistics once per call and cache them for every group."""

from __future__ import annotations

import numpy as np
import torch
import torch.fx as fx

from deepshrink.pruning import primitives
from deepshrink.pruning.graph import Group
from deepshrink.pruning.importance import CRITERIA, ScoringContext
from deepshrink.pruning.layer_ops import layer_op
from deepshrink.pruning.trace import eval_mode


def _taylor_contributions(ctx: ScoringContext) -> list[dict[tuple[str, str], torch.Tensor]]:
    """Per batch, per producing slot: sum of weight x gradient over each index's parameters."""
    graph, model = ctx.graph, ctx.graph.model
    slots = [s for s in graph.slots if s.role in ("out", "channels") and s.layer in ctx.modules]
    owned = {s.key: layer_op(ctx.module(s.layer)).indexed_params(ctx.module(s.layer), s.role) for s in slots}
    params = list(dict.fromkeys(p for ps in owned.values() for p in ps))
    per_batch = []
    with eval_mode(model):  # eval: running statistics of the original stay untouched
        for images, labels in ctx.batches("taylor"):
            loss = ctx.loss(model, images, labels)
            grads = dict(zip(params, torch.autograd.grad(loss, params, allow_unused=True)))
            contrib = {}
            for key, ps in owned.items():
                terms = [(p.detach() * grads[p]).flatten(1).sum(1) if p.dim() > 1 else p.detach() * grads[p]
                         for p in ps if grads[p] is not None]
                if terms:
                    contrib[key] = torch.stack(terms).sum(0).float()
            per_batch.append(contrib)
    return per_batch


@CRITERIA.register("taylor", needs_data=True)
def taylor(group: Group, ctx: ScoringContext) -> torch.Tensor:
    """First-order Taylor estimate of the loss change when a unit is removed (Molchanov et al.
    2019): (sum over the unit's parameters of w * dL/dw)^2, averaged over batches."""
    if "taylor" not in ctx.cache:
        ctx.cache["taylor"] = _taylor_contributions(ctx)
    score = torch.zeros(group.size)
    for contrib in ctx.cache["taylor"]:
        unit = torch.zeros(group.size)
        for key in group.members:
            if key in contrib:
                unit += group.gather(key, contrib[key])
        score += unit.pow(2)
    return score / max(1, len(ctx.cache["taylor"]))


class _Capture(fx.Interpreter):
    """Runs the traced graph and sums the per-channel rank of the wanted nodes' outputs."""

    def __init__(self, gm: fx.GraphModule, wanted: dict[str, int]) -> None:
        super().__init__(gm)
        self.wanted, self.ranks = wanted, {}

    def run_node(self, n: fx.Node):
        result = super().run_node(n)
        if n.name in self.wanted:
            ranks = primitives.feature_map_ranks(result, self.wanted[n.name])
            self.ranks[n.name] = self.ranks.get(n.name, 0) + ranks
        return result


def _feature_ranks(ctx: ScoringContext) -> dict[str, torch.Tensor]:
    graph = ctx.graph
    capture = _Capture(graph.gm, {f.node: f.cdim for f in graph.features if f.cdim == 1})
    batches = ctx.batches("hrank")
    with eval_mode(graph.gm), torch.no_grad():
        for images, _ in batches:
            capture.run(images)
    return {name: r / len(batches) for name, r in capture.ranks.items()}


@CRITERIA.register("hrank", needs_data=True)
def hrank(group: Group, ctx: ScoringContext) -> torch.Tensor | None:
    """Average rank of the unit's feature maps over a few batches (Lin et al. 2020), read after
    the activation where there is one. Groups without spatial feature maps are not ranked."""
    if "hrank" not in ctx.cache:
        ctx.cache["hrank"] = _feature_ranks(ctx)
    ranks = ctx.cache["hrank"]
    index = {int(r): i for i, r in enumerate(group.roots)}
    hits = []
    for feature in ctx.graph.features:
        if feature.node not in ranks:
            continue
        roots = ctx.graph.roots[feature.atoms]
        mask = np.isin(roots, group.roots)
        if mask.any():
            hits.append((feature, roots, mask))
    if any(f.after_activation for f, _, _ in hits):
        hits = [h for h in hits if h[0].after_activation]
    if not hits:
        return None
    total, count = torch.zeros(group.size), torch.zeros(group.size)
    for feature, roots, mask in hits:
        units = torch.as_tensor([index[int(r)] for r in roots[mask]])
        total.index_add_(0, units, ranks[feature.node][torch.as_tensor(np.flatnonzero(mask))])
        count.index_add_(0, units, torch.ones(len(units)))
    return total / count.clamp(min=1)
