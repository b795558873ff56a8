"""One decomposer per (layer type, method): its rank limits, the params and MACs a rank costs, the
matrices whose spectra pick ranks, and the plain nn.Sequential it becomes. `decomposer_for`
dispatches on the layer's type, then on the method."""

from __future__ import annotations

from abc import ABC, abstractmethod

import torch
import torch.nn as nn

from deepshrink.errors import ConfigError, ModelError
from deepshrink.lowrank import primitives as P
from deepshrink.lowrank.config import Advanced, Method
from deepshrink.lowrank.geometry import Axis, ConvGeometry, linear
from deepshrink.lowrank.shapes import LayerShape
from deepshrink.threads import one_thread

Rank = tuple[int, ...]


class Decomposer(ABC):
    method: Method
    arity = 1  # how many numbers a rank has

    def __init__(self, name: str, layer: nn.Module) -> None:
        self.name, self.layer = name, layer

    @abstractmethod
    def max_rank(self) -> Rank: ...

    @abstractmethod
    def params(self, rank: Rank) -> int: ...

    @abstractmethod
    def macs(self, rank: Rank, shape: LayerShape) -> int: ...

    @abstractmethod
    def matrices(self) -> list[torch.Tensor]:
        """The matricisations whose singular values choose ranks (energy, VBMF)."""

    @abstractmethod
    def build(self, rank: Rank) -> nn.Sequential:
        """The decomposed layer with the right shapes and uninitialised weights."""

    @abstractmethod
    def _assign(self, seq: nn.Sequential, rank: Rank, advanced: Advanced) -> None: ...

    def fit(self, rank: Rank, advanced: Advanced) -> nn.Sequential:
        seq = self.build(rank)
        with torch.no_grad(), one_thread():  # kernel-sized factorisations: see deepshrink.threads
            self._assign(seq, rank, advanced)
        return seq

    def family(self) -> list[Rank]:
        """Candidate ranks, cheapest first (costs grow along the list)."""
        return [(r,) for r in range(1, self.max_rank()[0] + 1)]

    def from_matrix_ranks(self, ranks: list[int]) -> Rank:
        """The layer rank from the ranks chosen on each of `matrices()`."""
        return self.clip(tuple(ranks))

    def clip(self, rank: Rank) -> Rank:
        return tuple(min(max(r, 1), m) for r, m in zip(rank, self.max_rank()))

    def normalise(self, rank: int | tuple[int, ...] | list[int]) -> Rank:
        """A user's rank as a checked tuple; an int means the same rank on every axis."""
        values = (rank,) * self.arity if isinstance(rank, int) else tuple(rank)
        limit = self.max_rank()
        if len(values) != self.arity:
            raise ConfigError(f"layer '{self.name}': {self.method.value} takes {self.arity} rank(s), got {list(values)}")
        if any(v < 1 for v in values) or any(v > m for v, m in zip(values, limit)):
            shown = values[0] if self.arity == 1 else list(values)
            most = limit[0] if self.arity == 1 else list(limit)
            raise ConfigError(
                f"layer '{self.name}' ({self.describe()}): {self.method.value} rank {shown} is out of range; "
                f"it allows 1..{most}"
            )
        return values

    def original_params(self) -> int:
        return sum(p.numel() for p in self.layer.parameters())

    @abstractmethod
    def original_macs(self, shape: LayerShape) -> int: ...

    @abstractmethod
    def describe(self) -> str: ...


class LinearSVD(Decomposer):
    """Linear (out x in) -> Linear(in, r, no bias) -> Linear(r, out) by truncated SVD."""

    method = Method.SVD

    def __init__(self, name: str, layer: nn.Linear) -> None:
        super().__init__(name, layer)
        self.n_in, self.n_out = layer.in_features, layer.out_features
        self.bias = layer.bias is not None

    def describe(self) -> str:
        return f"Linear {self.n_in}->{self.n_out}"

    def max_rank(self) -> Rank:
        return (min(self.n_in, self.n_out),)

    def params(self, rank: Rank) -> int:
        return rank[0] * (self.n_in + self.n_out) + self.n_out * self.bias

    def macs(self, rank: Rank, shape: LayerShape) -> int:
        return shape.out_positions * rank[0] * (self.n_in + self.n_out)

    def original_macs(self, shape: LayerShape) -> int:
        return shape.out_positions * self.n_in * self.n_out

    def matrices(self) -> list[torch.Tensor]:
        return [self.layer.weight]

    def build(self, rank: Rank) -> nn.Sequential:
        return nn.Sequential(
            linear(self.n_in, rank[0], bias=False, like=self.layer),
            linear(rank[0], self.n_out, bias=self.bias, like=self.layer),
        )

    def _assign(self, seq: nn.Sequential, rank: Rank, advanced: Advanced) -> None:
        left, right = P.truncated_svd(self.layer.weight, rank[0])
        _copy(seq[0].weight, right)
        _copy(seq[1].weight, left)
        _copy_bias(seq[-1], self.layer)


class ConvDecomposer(Decomposer):
    def __init__(self, name: str, layer: nn.Conv2d) -> None:
        super().__init__(name, layer)
        self.g = ConvGeometry.of(name, layer)
        self.c_in, self.c_out = self.g.in_channels, self.g.out_channels
        self.kh, self.kw = self.g.kernel

    def describe(self) -> str:
        return f"Conv2d {self.c_in}->{self.c_out}, {self.kh}x{self.kw}"

    def original_macs(self, shape: LayerShape) -> int:
        return shape.out_positions * self.c_out * self.c_in * self.g.kernel_area

    def _bias_params(self) -> int:
        return self.c_out if self.g.bias else 0


class ChannelSVD(ConvDecomposer):
    """kh x kw conv with r outputs -> 1x1 conv to C_out (SVD of W as C_out x (C_in kh kw))."""

    method = Method.SVD

    def max_rank(self) -> Rank:
        return (min(self.c_out, self.c_in * self.g.kernel_area),)

    def params(self, rank: Rank) -> int:
        return rank[0] * (self.c_in * self.g.kernel_area + self.c_out) + self._bias_params()

    def macs(self, rank: Rank, shape: LayerShape) -> int:
        return shape.out_positions * rank[0] * (self.c_in * self.g.kernel_area + self.c_out)

    def matrices(self) -> list[torch.Tensor]:
        return [P.unfold(self.layer.weight, 0)]

    def build(self, rank: Rank) -> nn.Sequential:
        (r,) = rank
        return nn.Sequential(
            self.g.conv(self.c_in, r, Axis.BOTH), self.g.conv(r, self.c_out, Axis.POINT, bias=self.g.bias)
        )

    def _assign(self, seq: nn.Sequential, rank: Rank, advanced: Advanced) -> None:
        first, second = P.channel_svd(self.layer.weight, rank[0])
        _copy(seq[0].weight, first)
        _copy(seq[1].weight, second)
        _copy_bias(seq[-1], self.layer)


class Tucker2(ConvDecomposer):
    """1x1 (C_in -> r_in) -> kh x kw core (r_in -> r_out, carries stride/padding) -> 1x1 (-> C_out).
    Ranks are (r_out, r_in), the order of the weight's modes."""

    method = Method.TUCKER
    arity = 2

    def max_rank(self) -> Rank:
        # The rank of each channel unfolding: beyond it a Tucker factor adds nothing.
        area = self.g.kernel_area
        return (min(self.c_out, self.c_in * area), min(self.c_in, self.c_out * area))

    def family(self) -> list[Rank]:
        # Both ranks grow in proportion to their limits: a chain, so params and MACs both rise
        # along it.
        top_out, top_in = self.max_rank()
        steps = max(top_out, top_in)
        ranks = [(max(1, round(t * top_out / steps)), max(1, round(t * top_in / steps))) for t in range(1, steps + 1)]
        return list(dict.fromkeys(ranks))

    def params(self, rank: Rank) -> int:
        r_out, r_in = rank
        return self.c_in * r_in + r_in * r_out * self.g.kernel_area + r_out * self.c_out + self._bias_params()

    def macs(self, rank: Rank, shape: LayerShape) -> int:
        r_out, r_in = rank
        head = shape.in_positions * self.c_in * r_in
        return head + shape.out_positions * r_out * (r_in * self.g.kernel_area + self.c_out)

    def matrices(self) -> list[torch.Tensor]:
        return [P.unfold(self.layer.weight, 0), P.unfold(self.layer.weight, 1)]

    def build(self, rank: Rank) -> nn.Sequential:
        r_out, r_in = rank
        return nn.Sequential(
            self.g.conv(self.c_in, r_in, Axis.POINT),
            self.g.conv(r_in, r_out, Axis.BOTH),
            self.g.conv(r_out, self.c_out, Axis.POINT, bias=self.g.bias),
        )

    def _assign(self, seq: nn.Sequential, rank: Rank, advanced: Advanced) -> None:
        core, u_out, u_in = P.tucker2(self.layer.weight, rank, advanced.tucker_iterations)
        _copy(seq[0].weight, u_in.T[:, :, None, None])
        _copy(seq[1].weight, core)
        _copy(seq[2].weight, u_out[:, :, None, None])
        _copy_bias(seq[-1], self.layer)


class CP(ConvDecomposer):
    """1x1 (C_in -> R) -> depthwise kh x 1 -> depthwise 1 x kw -> 1x1 (R -> C_out)."""

    method = Method.CP

    def max_rank(self) -> Rank:
        return (P.cp_max_rank((self.c_out, self.c_in, self.kh, self.kw)),)

    def params(self, rank: Rank) -> int:
        return rank[0] * (self.c_in + self.kh + self.kw + self.c_out) + self._bias_params()

    def macs(self, rank: Rank, shape: LayerShape) -> int:
        (r,) = rank
        # The vertical depthwise conv already has the output height but still the input width.
        middle = shape.out_hw[0] * shape.in_hw[1] * r * self.kh
        return shape.in_positions * self.c_in * r + middle + shape.out_positions * r * (self.kw + self.c_out)

    def matrices(self) -> list[torch.Tensor]:
        return [P.unfold(self.layer.weight, 0), P.unfold(self.layer.weight, 1)]

    def from_matrix_ranks(self, ranks: list[int]) -> Rank:
        # CP has no matrix rank of its own; the larger channel rank is the usual proxy.
        return self.clip((max(ranks),))

    def build(self, rank: Rank) -> nn.Sequential:
        (r,) = rank
        return nn.Sequential(
            self.g.conv(self.c_in, r, Axis.POINT),
            self.g.conv(r, r, Axis.VERTICAL, depthwise=True),
            self.g.conv(r, r, Axis.HORIZONTAL, depthwise=True),
            self.g.conv(r, self.c_out, Axis.POINT, bias=self.g.bias),
        )

    def _assign(self, seq: nn.Sequential, rank: Rank, advanced: Advanced) -> None:
        f_out, f_in, f_h, f_w = P.cp4(
            self.layer.weight, rank[0], iterations=advanced.cp_iterations, tol=advanced.cp_tol, seed=advanced.seed
        )
        _copy(seq[0].weight, f_in.T[:, :, None, None])
        _copy(seq[1].weight, f_h.T[:, None, :, None])
        _copy(seq[2].weight, f_w.T[:, None, None, :])
        _copy(seq[3].weight, f_out[:, :, None, None])
        _copy_bias(seq[-1], self.layer)


class Spatial(ConvDecomposer):
    """kh x 1 conv (C_in -> R) -> 1 x kw conv (R -> C_out), Jaderberg et al. scheme 2."""

    method = Method.SPATIAL

    def max_rank(self) -> Rank:
        return (min(self.c_in * self.kh, self.c_out * self.kw),)

    def params(self, rank: Rank) -> int:
        return rank[0] * (self.c_in * self.kh + self.c_out * self.kw) + self._bias_params()

    def macs(self, rank: Rank, shape: LayerShape) -> int:
        (r,) = rank
        return shape.out_hw[0] * shape.in_hw[1] * self.c_in * r * self.kh + shape.out_positions * r * self.c_out * self.kw

    def matrices(self) -> list[torch.Tensor]:
        return [P.spatial_matrix(self.layer.weight)]

    def build(self, rank: Rank) -> nn.Sequential:
        (r,) = rank
        return nn.Sequential(
            self.g.conv(self.c_in, r, Axis.VERTICAL),
            self.g.conv(r, self.c_out, Axis.HORIZONTAL, bias=self.g.bias),
        )

    def _assign(self, seq: nn.Sequential, rank: Rank, advanced: Advanced) -> None:
        vertical, horizontal = P.spatial_svd(self.layer.weight, rank[0])
        _copy(seq[0].weight, vertical)
        _copy(seq[1].weight, horizontal)
        _copy_bias(seq[-1], self.layer)


CONV_DECOMPOSERS: dict[Method, type[ConvDecomposer]] = {
    Method.TUCKER: Tucker2,
    Method.CP: CP,
    Method.SVD: ChannelSVD,
    Method.SPATIAL: Spatial,
}

# Layer type -> (name, layer, method) -> decomposer. Exact types: a Conv2d subclass may change
# what forward computes, so it is not assumed to be decomposable.
_BY_TYPE = {
    nn.Linear: lambda name, layer, method: LinearSVD(name, layer),
    nn.Conv2d: lambda name, layer, method: CONV_DECOMPOSERS[method](name, layer),
}


def decomposer_for(name: str, layer: nn.Module, method: Method) -> Decomposer:
    """The decomposer of `layer` for `method` (linear layers always use SVD); a clear error for
    layer types that cannot be decomposed."""
    make = _BY_TYPE.get(type(layer))
    if make is None:
        raise ModelError(
            f"layer '{name}' ({type(layer).__name__}) cannot be decomposed: only Conv2d (groups=1) and Linear can"
        )
    return make(name, layer, method)


def is_decomposable(name: str, layer: nn.Module) -> bool:
    try:
        decomposer_for(name, layer, Method.SVD)
    except ModelError:
        return False
    return True


def _copy(target: torch.Tensor, value: torch.Tensor) -> None:
    target.copy_(value.to(dtype=target.dtype, device=target.device).reshape(target.shape))


def _copy_bias(last: nn.Module, layer: nn.Module) -> None:
    if layer.bias is not None:
        last.bias.copy_(layer.bias.detach())
