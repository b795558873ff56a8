"""Layers with per-channel parameters: convolution (plain, grouped, depthwise), linear, batch /
instance / group norm and PReLU. Each knows its channel semantics and how to cut its tensors."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn as nn
from torch.nn.modules import batchnorm, instancenorm

from deepshrink.errors import ModelError
from deepshrink.pruning.builder import Builder
from deepshrink.pruning.layer_ops import LayerOp, check_kept, register_layer, replace_param, take


def _couple_blocks(b: Builder, parts: list[np.ndarray]) -> None:
    """Every atom of every part becomes one unit (removed together)."""
    atoms = np.concatenate(parts)
    b.couple(np.full(len(atoms) - 1, atoms[0]), atoms[1:])


def _couple_aligned(b: Builder, atoms: np.ndarray, groups: int) -> None:
    """Index i of every group is one unit, so all groups keep the same width."""
    per = len(atoms) // groups
    for k in range(1, groups):
        b.couple(atoms[:per], atoms[k * per:(k + 1) * per])


@register_layer(nn.Conv1d, nn.Conv2d, nn.Conv3d)
class ConvOp(LayerOp):
    @staticmethod
    def _grouping(m: nn.Module) -> str:
        cin_g, cout_g = m.in_channels // m.groups, m.out_channels // m.groups
        if m.groups == 1:
            return "dense"
        # One input or one filter per group (depthwise): a channel can only go with its whole group.
        return "whole_groups" if cin_g == 1 or cout_g == 1 else "aligned"

    def trace(self, b, name, m, x):
        if x.cdim != 1:
            raise b.unsupported(f"expects channels in dimension 1, the traced input has them in {x.cdim}")
        out = b.new_value(1)
        b.slot(name, "in", type(m).__name__, x.atoms)
        b.slot(name, "out", type(m).__name__, out.atoms, producer=True)
        g = m.groups
        mode = self._grouping(m)
        if mode == "whole_groups":
            cin_g, cout_g = m.in_channels // g, m.out_channels // g
            for k in range(g):
                _couple_blocks(b, [x.atoms[k * cin_g:(k + 1) * cin_g], out.atoms[k * cout_g:(k + 1) * cout_g]])
        elif mode == "aligned":
            _couple_aligned(b, x.atoms, g)
            _couple_aligned(b, out.atoms, g)
        b.feature(out, after_activation=False)
        return out

    def prune(self, m, entry, layer):
        g = m.groups
        cin_g, cout_g = m.in_channels // g, m.out_channels // g
        keep_out = check_kept(layer, "out", entry.get("out", range(m.out_channels)), m.out_channels)
        keep_in = check_kept(layer, "in", entry.get("in", range(m.in_channels)), m.in_channels)
        mode = self._grouping(m)
        if mode == "dense":
            local_in, groups = keep_in, 1
        elif mode == "whole_groups":
            kept_groups = sorted({i // cout_g for i in keep_out})
            if kept_groups != sorted({i // cin_g for i in keep_in}) or len(keep_out) != len(kept_groups) * cout_g:
                raise ModelError(f"plan for grouped conv '{layer}' does not keep whole groups")
            local_in, groups = list(range(cin_g)), len(kept_groups)
        else:
            local_in = [i for i in keep_in if i < cin_g]
            if len(keep_in) != len(local_in) * g or len(keep_out) % g:
                raise ModelError(f"plan for grouped conv '{layer}' keeps unequal widths per group")
            groups = g
        replace_param(m, "weight", take(take(m.weight, 0, keep_out), 1, local_in))
        if m.bias is not None:
            replace_param(m, "bias", take(m.bias, 0, keep_out))
        m.in_channels, m.out_channels, m.groups = len(keep_in), len(keep_out), groups
        return m

    def zero(self, m, removed):
        with torch.no_grad():
            out = removed.get("out", [])
            m.weight[out] = 0
            if m.bias is not None:
                m.bias[out] = 0
            cin_g = m.in_channels // m.groups
            if self._grouping(m) != "whole_groups":  # depthwise inputs go with their filters (out)
                m.weight[:, sorted({i % cin_g for i in removed.get("in", [])})] = 0

    def indexed_params(self, m, role):
        return [p for p in (m.weight, m.bias) if p is not None] if role == "out" else []

    def sizes(self, m):
        return {"in": m.in_channels, "out": m.out_channels}

    def cost(self, m, entry):
        out = len(entry.get("out", range(m.out_channels)))
        kernel = m.weight[0, 0].numel()
        if self._grouping(m) == "whole_groups":
            per_filter = m.weight.shape[1] * kernel
        else:
            per_filter = len(entry.get("in", range(m.in_channels))) // m.groups * kernel
        return out * per_filter + (out if m.bias is not None else 0), out * per_filter


@register_layer(nn.Linear)
class LinearOp(LayerOp):
    def trace(self, b, name, m, x):
        last = len(x.shape) - 1
        if x.cdim != last:
            raise b.unsupported(f"applies to the last dimension but the traced channels are in dimension {x.cdim}")
        out = b.new_value(last)
        b.slot(name, "in", "Linear", x.atoms)
        b.slot(name, "out", "Linear", out.atoms, producer=True)
        return out

    def prune(self, m, entry, layer):
        keep_out = check_kept(layer, "out", entry.get("out", range(m.out_features)), m.out_features)
        keep_in = check_kept(layer, "in", entry.get("in", range(m.in_features)), m.in_features)
        replace_param(m, "weight", take(take(m.weight, 0, keep_out), 1, keep_in))
        if m.bias is not None:
            replace_param(m, "bias", take(m.bias, 0, keep_out))
        m.in_features, m.out_features = len(keep_in), len(keep_out)
        return m

    def zero(self, m, removed):
        with torch.no_grad():
            m.weight[removed.get("out", [])] = 0
            m.weight[:, removed.get("in", [])] = 0
            if m.bias is not None:
                m.bias[removed.get("out", [])] = 0

    def indexed_params(self, m, role):
        return [p for p in (m.weight, m.bias) if p is not None] if role == "out" else []

    def sizes(self, m):
        return {"in": m.in_features, "out": m.out_features}

    def cost(self, m, entry):
        out, inp = len(entry.get("out", range(m.out_features))), len(entry.get("in", range(m.in_features)))
        return out * inp + (out if m.bias is not None else 0), out * inp


class _ChannelwiseOp(LayerOp):
    """Norms and PReLU: one parameter (and statistic) per channel, channels pass through."""

    tensors = ("weight", "bias", "running_mean", "running_var")
    size_attr = "num_features"

    def trace(self, b, name, m, x):
        if x.cdim != 1:
            raise b.unsupported(f"expects channels in dimension 1, the traced input has them in {x.cdim}")
        b.slot(name, "channels", type(m).__name__, x.atoms)
        return x.like(b.shape())

    def prune(self, m, entry, layer):
        size = getattr(m, self.size_attr)
        keep = check_kept(layer, "channels", entry.get("channels", range(size)), size)
        for attr in self.tensors:
            tensor = getattr(m, attr, None)
            if isinstance(tensor, torch.Tensor) and tensor.dim() > 0 and tensor.shape[0] == size:
                replace_param(m, attr, take(tensor, 0, keep))
        setattr(m, self.size_attr, len(keep))
        return m

    def zero(self, m, removed):
        # Zero scale AND shift: BN of anything then outputs exactly 0 on these channels.
        with torch.no_grad():
            for attr in ("weight", "bias"):
                tensor = getattr(m, attr, None)
                if isinstance(tensor, torch.Tensor) and tensor.dim() > 0:
                    tensor[removed.get("channels", [])] = 0

    def indexed_params(self, m, role):
        return [p for p in (getattr(m, "weight", None), getattr(m, "bias", None)) if p is not None]

    def sizes(self, m):
        return {"channels": getattr(m, self.size_attr)}

    def cost(self, m, entry):
        size = getattr(m, self.size_attr)
        kept = len(entry.get("channels", range(size)))
        return sum(p.numel() * kept // size if p.dim() and p.shape[0] == size else p.numel()
                   for p in m.parameters(recurse=False)), 0


@register_layer(batchnorm._BatchNorm, instancenorm._InstanceNorm)
class BatchNormOp(_ChannelwiseOp):
    pass


@register_layer(nn.GroupNorm)
class GroupNormOp(_ChannelwiseOp):
    """GroupNorm statistics span a group: channels can only go a whole group at a time."""

    size_attr = "num_channels"

    def trace(self, b, name, m, x):
        out = super().trace(b, name, m, x)
        per = m.num_channels // m.num_groups
        for k in range(m.num_groups):
            _couple_blocks(b, [x.atoms[k * per:(k + 1) * per]])
        return out

    def prune(self, m, entry, layer):
        per = m.num_channels // m.num_groups
        kept = entry.get("channels", range(m.num_channels))
        if len(kept) % per:
            raise ModelError(f"plan for GroupNorm '{layer}' does not keep whole groups of {per}")
        m.num_groups = len(kept) // per
        return super().prune(m, entry, layer)


@register_layer(nn.PReLU)
class PReLUOp(_ChannelwiseOp):
    size_attr = "num_parameters"

    def trace(self, b, name, m, x):
        if m.num_parameters == 1:  # one shared slope: plain element-wise
            return x.like(b.shape())
        return super().trace(b, name, m, x)

    def zero(self, m, removed):
        return None  # a slope times zero is zero; consumers are zeroed as well
