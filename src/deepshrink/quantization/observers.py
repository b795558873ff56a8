"""Range observers: they watch a tensor during calibration and choose its quantisation range.

Min-max and moving-average min-max need one pass over the calibration data. The histogram
observers (percentile, MSE-optimal, KL/entropy) take two: the first finds the range, the second
fills a fixed-range histogram, so memory stays at `histogram_bins` counts per tensor. Users can
register their own observer class in OBSERVERS."""

from __future__ import annotations

import abc
import math

import torch

from deepshrink.quantization.config import Advanced
from deepshrink.quantization.primitives import QuantGrid, compute_qparams, fake_quantize, reduce_dims
from deepshrink.registry import Registry

OBSERVERS: Registry[type["Observer"]] = Registry("observer")

SEARCH_FRACTIONS = torch.linspace(0.05, 1.0, 96)  # fractions of the observed range tried by search observers


class Observer:
    """Per-tensor observer. `update(x, pass_index)` for each calibration batch of each pass, then
    `range()` -> (min, max) to feed `compute_qparams`."""

    passes = 1

    def __init__(self, grid: QuantGrid, options: Advanced) -> None:
        self.grid = grid
        self.options = options
        self.min_val = torch.tensor(math.inf)
        self.max_val = torch.tensor(-math.inf)
        self.abs_sum, self.count = torch.tensor(0.0, dtype=torch.float64), 0
        self.track_abs = False  # mean |x| is only needed by binary activations

    def update(self, x: torch.Tensor, pass_index: int = 0) -> None:
        lo, hi = torch.aminmax(self.track(x))
        self.min_val = torch.minimum(self.min_val, lo)
        self.max_val = torch.maximum(self.max_val, hi)

    def track(self, x: torch.Tensor) -> torch.Tensor:
        """Detach, and keep the running mean |x| (the scale of binary activations)."""
        x = x.detach().float()
        if self.track_abs:
            self.abs_sum += x.abs().sum().double()
            self.count += x.numel()
        return x

    def abs_mean(self) -> torch.Tensor:
        return (self.abs_sum / max(self.count, 1)).float().clamp(min=1e-8)

    @property
    def seen(self) -> bool:
        return bool(torch.isfinite(self.min_val))

    def range(self) -> tuple[torch.Tensor, torch.Tensor]:
        return self.min_val, self.max_val

    def qparams(self) -> tuple[torch.Tensor, torch.Tensor]:
        return compute_qparams(*self.range(), self.grid)


OBSERVERS.register("minmax")(Observer)


@OBSERVERS.register("moving_average")
class MovingAverageObserver(Observer):
    """Exponential moving average of each batch's min and max (robust to a few outlier batches)."""

    def update(self, x: torch.Tensor, pass_index: int = 0) -> None:
        lo, hi = torch.aminmax(self.track(x))
        if not self.seen:
            self.min_val, self.max_val = lo, hi
            return
        c = self.options.averaging_constant
        self.min_val = self.min_val + c * (lo - self.min_val)
        self.max_val = self.max_val + c * (hi - self.max_val)


class HistogramObserver(Observer, abc.ABC):
    """Pass 0: min/max. Pass 1: a histogram over that range. Subclasses choose the range."""

    passes = 2

    def __init__(self, grid: QuantGrid, options: Advanced) -> None:
        super().__init__(grid, options)
        self.hist = torch.zeros(options.histogram_bins, dtype=torch.float64)

    def update(self, x: torch.Tensor, pass_index: int = 0) -> None:
        if pass_index == 0:
            super().update(x)
            return
        lo, hi = float(self.min_val), float(self.max_val)
        if hi <= lo:
            return
        self.hist += torch.histc(x.detach().float().clamp(lo, hi), bins=self.hist.numel(), min=lo, max=hi).double()

    def centers(self) -> torch.Tensor:
        lo, hi = float(self.min_val), float(self.max_val)
        width = (hi - lo) / self.hist.numel()
        return lo + width * (torch.arange(self.hist.numel(), dtype=torch.float64) + 0.5)

    def range(self) -> tuple[torch.Tensor, torch.Tensor]:
        if self.hist.sum() <= 0:
            return self.min_val, self.max_val
        return self.choose()

    @abc.abstractmethod
    def choose(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The chosen (min, max) from the filled histogram."""

    def candidates(self) -> list[tuple[torch.Tensor, torch.Tensor]]:
        return [(self.min_val * a, self.max_val * a) for a in SEARCH_FRACTIONS]


@OBSERVERS.register("percentile")
class PercentileObserver(HistogramObserver):
    """Clip to the central `percentile` % of the mass (99.99 by default)."""

    def choose(self) -> tuple[torch.Tensor, torch.Tensor]:
        cdf = torch.cumsum(self.hist, 0) / self.hist.sum()
        tail = (100.0 - self.options.percentile) / 100.0
        centers = self.centers()
        lo_index = int(torch.searchsorted(cdf, torch.tensor(tail / 2, dtype=torch.float64)))
        hi_index = int(torch.searchsorted(cdf, torch.tensor(1 - tail / 2, dtype=torch.float64)))
        lo = self.min_val if float(self.min_val) >= 0 else torch.tensor(float(centers[lo_index]))
        return lo.float(), torch.tensor(float(centers[min(hi_index, len(centers) - 1)])).float()


@OBSERVERS.register("mse")
class MSEObserver(HistogramObserver):
    """The range whose quantisation grid minimises the expected squared error (Banner et al. /
    OMSE): clipping error of the tails plus rounding error of the body, from the histogram."""

    def choose(self) -> tuple[torch.Tensor, torch.Tensor]:
        centers, weights = self.centers().float(), self.hist.float()
        errors = []
        for lo, hi in self.candidates():
            scale, zero_point = compute_qparams(lo, hi, self.grid)
            errors.append((weights * (fake_quantize(centers, scale, zero_point, self.grid) - centers) ** 2).sum())
        return self.candidates()[int(torch.stack(errors).argmin())]


@OBSERVERS.register("kl")
class KLObserver(HistogramObserver):
    """Entropy calibration (TensorRT): the range whose quantised histogram Q is closest in
    KL divergence to the clipped reference histogram P (outliers folded into the edge bins).
    Exact zeros (half of every post-ReLU tensor) are left out of the histogram: zero is exact on
    every grid here, and the spike would otherwise dominate the divergence and force clipping."""

    def update(self, x: torch.Tensor, pass_index: int = 0) -> None:
        super().update(x if pass_index == 0 else x[x != 0], pass_index)

    def choose(self) -> tuple[torch.Tensor, torch.Tensor]:
        centers, hist = self.centers().float(), self.hist
        best, best_kl = self.candidates()[-1], math.inf
        for lo, hi in self.candidates():
            inside = (centers >= lo) & (centers <= hi)
            if int(inside.sum()) < self.grid.levels:  # fewer bins than levels: no information
                continue
            first, last = int(inside.nonzero()[0]), int(inside.nonzero()[-1])
            body = hist[first : last + 1]
            p = body.clone()
            p[0] += hist[:first].sum()
            p[-1] += hist[last + 1 :].sum()
            # Q quantises the body only (TensorRT): mass clipped into the edge bins is what P has
            # and Q lacks, so aggressive clipping pays in divergence.
            scale, zero_point = compute_qparams(lo, hi, self.grid)
            level = torch.round(centers[first : last + 1] / scale + zero_point).long()
            level = level - level.min()
            mass = torch.bincount(level, weights=body)
            support = torch.bincount(level, weights=(body > 0).double())
            q = torch.where(body > 0, mass[level] / support[level].clamp(min=1), torch.zeros_like(p))
            q = torch.where((p > 0) & (q == 0), torch.full_like(q, 1e-4 * float(body.sum()) / len(body)), q)
            p, q = p / p.sum(), q / q.sum()
            nz = p > 0
            kl = float((p[nz] * torch.log(p[nz] / q[nz])).sum())
            if kl < best_kl:
                best, best_kl = (lo, hi), kl
        return best


def weight_range(w: torch.Tensor, grid: QuantGrid, axis: int | None, *, search: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """(min, max) of a weight tensor, per channel along `axis`; with `search`, each channel's
    range is shrunk to the fraction that minimises its quantisation MSE (vectorised)."""
    dims = reduce_dims(w, axis)
    lo, hi = w.amin(dim=dims), w.amax(dim=dims)
    if not search:
        return lo, hi
    best_err = torch.full_like(lo, math.inf)
    best_lo, best_hi = lo.clone(), hi.clone()
    for a in SEARCH_FRACTIONS:
        scale, zero_point = compute_qparams(lo * a, hi * a, grid)
        err = (fake_quantize(w, scale, zero_point, grid, axis) - w).pow(2).sum(dim=dims)
        better = err < best_err
        best_err = torch.where(better, err, best_err)
        best_lo, best_hi = torch.where(better, lo * a, best_lo), torch.where(better, hi * a, best_hi)
    return best_lo, best_hi
