"""Analytic empirical variational Bayesian matrix factorisation (EVBMF), the rank estimator Kim et
al. (2016) apply to the channel unfoldings of each kernel.

From Nakajima, Sugiyama, Babacan and Tomioka, "Global analytic solution of fully-observed
variational Bayesian matrix factorization", JMLR 14 (2013). For Y (L x M, L <= M, alpha = L/M)
with singular values g_h and noise variance s2, a component survives iff

    g_h > sqrt(M * s2 * x_bar),     x_bar = (1 + t_bar) * (1 + alpha / t_bar),

where t_bar > 0 is the root of  log(t + 1) + alpha * log(t / alpha + 1) - t = 0  (2.5129 at
alpha = 1). The unknown s2 minimises the free energy (up to constants)

    Omega(s2) = sum_h x_h + L log s2 + sum_{x_h > x_bar} psi1(x_h),    x_h = g_h^2 / (M s2),
    psi1(x) = log(tau + 1) + alpha log(tau / alpha + 1) - tau,
    tau(x) = (x - (1 + alpha) + sqrt((x - (1 + alpha))^2 - 4 alpha)) / 2,

searched between the paper's bounds: at most H_bar = ceil(L / (1 + alpha)) - 1 components can
survive, which bounds s2 from below, and s2 <= ||Y||^2 / (L M)."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

Tensor = torch.Tensor

_GRID = 256  # log-spaced s2 candidates before the golden-section refinement
_GOLDEN = (math.sqrt(5) - 1) / 2


@dataclass(frozen=True)
class VBMFResult:
    rank: int
    sigma2: float  # estimated noise variance per entry
    threshold: float  # singular values above this survive


def evbmf(matrix: Tensor) -> VBMFResult:
    y = matrix.detach().double()
    if y.shape[0] > y.shape[1]:
        y = y.T
    rows, cols = y.shape
    alpha = rows / cols
    values = torch.linalg.svdvals(y)
    x_bar = _x_bar(alpha)
    sigma2 = _noise_variance(values, rows, cols, alpha, x_bar)
    threshold = math.sqrt(cols * sigma2 * x_bar)
    return VBMFResult(rank=int((values > threshold).sum()), sigma2=sigma2, threshold=threshold)


def _x_bar(alpha: float) -> float:
    t_bar = _t_bar(alpha)
    return (1 + t_bar) * (1 + alpha / t_bar)


def _t_bar(alpha: float) -> float:
    """Positive root of log(t + 1) + alpha log(t / alpha + 1) - t by bisection: the function is
    positive just above 0 (slope 1 there) and tends to minus infinity."""

    def f(t: float) -> float:
        return math.log1p(t) + alpha * math.log1p(t / alpha) - t

    low, high = math.sqrt(alpha), 2.0
    while f(high) > 0:
        high *= 2
    for _ in range(100):
        middle = (low + high) / 2
        low, high = (middle, high) if f(middle) > 0 else (low, middle)
    return (low + high) / 2


def _objective(sigma2: float, values: Tensor, rows: int, cols: int, alpha: float, x_bar: float) -> float:
    x = values**2 / (cols * sigma2)
    large = x[x > x_bar]
    shifted = large - (1 + alpha)
    tau = (shifted + torch.sqrt(shifted**2 - 4 * alpha)) / 2
    psi1 = torch.log1p(tau) + alpha * torch.log1p(tau / alpha) - tau
    return float(x.sum() + rows * math.log(sigma2) + psi1.sum())


def _noise_variance(values: Tensor, rows: int, cols: int, alpha: float, x_bar: float) -> float:
    power = values**2
    upper = float(power.sum()) / (rows * cols)
    if upper <= 0:
        return 1.0  # an all-zero matrix: any positive variance gives rank 0
    h_bar = min(math.ceil(rows / (1 + alpha)) - 1, rows - 1)
    lower = max(float(power[h_bar]) / (cols * x_bar), float(power[h_bar:].mean()) / cols)
    lower = min(max(lower, upper * 1e-12), upper)
    if lower >= upper:
        return upper

    def omega(log_s2: float) -> float:
        return _objective(math.exp(log_s2), values, rows, cols, alpha, x_bar)

    # Omega need not be unimodal: a coarse log grid finds the basin, golden section polishes it.
    grid = torch.linspace(math.log(lower), math.log(upper), _GRID).tolist()
    scores = [omega(g) for g in grid]
    best = min(range(_GRID), key=scores.__getitem__)
    a, b = grid[max(best - 1, 0)], grid[min(best + 1, _GRID - 1)]
    for _ in range(60):
        c, d = b - _GOLDEN * (b - a), a + _GOLDEN * (b - a)
        a, b = (a, d) if omega(c) < omega(d) else (c, b)
    refined = (a + b) / 2
    return math.exp(refined if omega(refined) <= scores[best] else grid[best])
