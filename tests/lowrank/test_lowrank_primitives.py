"""The tensor maths alone: exact reconstructions, rank rules, and VBMF on matrices of known rank."""

from __future__ import annotations

import math

import pytest
import torch

from deepshrink.lowrank import primitives as P
from deepshrink.lowrank.vbmf import _t_bar, evbmf


def _weight(*shape: int) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(3), dtype=torch.float64)


def test_energy_rank_counts_squared_singular_values() -> None:
    values = torch.tensor([3.0, 2.0, 1.0, 0.0])  # energies 9, 4, 1 of 14
    assert P.energy_rank(values, 9 / 14) == 1
    assert P.energy_rank(values, 0.65) == 2
    assert P.energy_rank(values, 13 / 14) == 2
    assert P.energy_rank(values, 1.0) == 3
    assert P.energy_rank(torch.zeros(4), 0.5) == 1


def test_truncated_svd_is_the_best_rank_r_approximation() -> None:
    matrix = _weight(12, 20)
    values = torch.linalg.svdvals(matrix)
    for rank in (1, 5, 12):
        left, right = P.truncated_svd(matrix, rank)
        error = torch.linalg.norm(left @ right - matrix)
        # Eckart-Young: the residual is exactly the discarded singular values.
        assert error == pytest.approx(float(values[rank:].norm()), abs=1e-9)


def test_spatial_and_channel_svd_rebuild_the_kernel_at_full_rank() -> None:
    weight = _weight(6, 4, 3, 5)
    vertical, horizontal = P.spatial_svd(weight, min(4 * 3, 6 * 5))
    assert vertical.shape == (12, 4, 3, 1) and horizontal.shape == (6, 12, 1, 5)
    rebuilt = torch.einsum("orw,rch->ochw", horizontal[:, :, 0], vertical[..., 0])
    assert torch.allclose(rebuilt, weight, atol=1e-10)
    first, second = P.channel_svd(weight, 6)
    assert torch.allclose(torch.einsum("or,rchw->ochw", second[:, :, 0, 0], first), weight, atol=1e-10)


def test_tucker2_full_rank_is_exact_and_factors_are_orthonormal() -> None:
    weight = _weight(8, 6, 3, 3)
    core, u_out, u_in = P.tucker2(weight, (8, 6), iterations=2)
    assert torch.allclose(P.tucker_to_tensor(core, u_out, u_in), weight, atol=1e-10)
    core, u_out, u_in = P.tucker2(weight, (4, 3), iterations=5)
    assert torch.allclose(u_out.T @ u_out, torch.eye(4, dtype=torch.float64), atol=1e-10)
    assert torch.allclose(u_in.T @ u_in, torch.eye(3, dtype=torch.float64), atol=1e-10)


@pytest.mark.parametrize("shape", [(5, 4, 3, 3), (4, 9, 1, 3), (2, 2, 7, 1)])
def test_exact_cp_at_the_rank_bound(shape: tuple[int, ...]) -> None:
    weight = _weight(*shape)
    rank = P.cp_max_rank(shape)
    assert rank == math.prod(shape) // max(shape)
    factors = P.cp4(weight, rank, iterations=1, tol=1e-6, seed=0)
    assert [tuple(f.shape) for f in factors] == [(n, rank) for n in shape]
    assert torch.allclose(P.cp_to_tensor(factors), weight, atol=1e-10)


def test_cp_balances_column_norms_across_the_four_factors() -> None:
    factors = P.cp4(_weight(6, 5, 3, 3), 4, iterations=50, tol=1e-8, seed=0)
    norms = torch.stack([f.norm(dim=0) for f in factors])
    assert torch.allclose(norms, norms[0].expand_as(norms), rtol=1e-9)


def test_t_bar_matches_the_published_constant() -> None:
    assert _t_bar(1.0) == pytest.approx(2.5129, abs=1e-4)  # Nakajima et al. 2013, alpha = 1
    for alpha in (0.05, 0.3, 0.9):
        t = _t_bar(alpha)
        assert math.log1p(t) + alpha * math.log1p(t / alpha) - t == pytest.approx(0.0, abs=1e-10)


@pytest.mark.parametrize(("rows", "cols", "rank", "noise"), [(40, 60, 5, 0.1), (64, 576, 12, 0.05), (30, 300, 0, 0.3)])
def test_vbmf_recovers_rank_and_noise_of_a_noisy_low_rank_matrix(rows: int, cols: int, rank: int, noise: float) -> None:
    gen = torch.Generator().manual_seed(0)
    signal = torch.randn(rows, rank, generator=gen, dtype=torch.float64) @ torch.randn(
        rank, cols, generator=gen, dtype=torch.float64
    )
    matrix = signal + noise * torch.randn(rows, cols, generator=gen, dtype=torch.float64)
    result = evbmf(matrix)
    assert result.rank == rank
    assert math.sqrt(result.sigma2) == pytest.approx(noise, rel=0.1)
    assert evbmf(matrix.T).rank == rank  # orientation does not matter
