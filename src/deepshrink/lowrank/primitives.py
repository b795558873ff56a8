"""Pure tensor maths of the decompositions: factor matrices and tensors, no modules.

Everything is computed in float64 and returned in float64; the layer builders cast back. SVD steps
use torch.linalg; Tucker (HOSVD + HOOI) and CP (ALS) use tensorly with its pytorch backend, entered
locally so a process-wide tensorly backend set elsewhere does not change our numbers."""

from __future__ import annotations

import math
import warnings

import tensorly as tl
import torch
from tensorly.decomposition import parafac, partial_tucker

Tensor = torch.Tensor


def unfold(tensor: Tensor, mode: int) -> Tensor:
    """Mode-`mode` matricisation: that axis becomes the rows."""
    return tensor.movedim(mode, 0).reshape(tensor.shape[mode], -1)


def singular_values(matrix: Tensor) -> Tensor:
    return torch.linalg.svdvals(matrix.detach().double())


def energy_rank(values: Tensor, energy: float) -> int:
    """Smallest r whose first r singular values hold `energy` of the total squared sum."""
    power = values.double() ** 2
    total = power.sum()
    if total <= 0:
        return 1
    kept = torch.cumsum(power, 0) / total
    # Tolerance so that energy=1.0 is reached despite rounding in the cumulative sum.
    return min(int((kept < energy - 1e-12).sum()) + 1, values.numel())


def truncated_svd(matrix: Tensor, rank: int) -> tuple[Tensor, Tensor]:
    """matrix (m, n) ~ left (m, r) @ right (r, n); the singular values are split as square roots
    between the two factors so both have similar scale (better for fine-tuning and quantising)."""
    u, s, vh = torch.linalg.svd(matrix.detach().double(), full_matrices=False)
    root = s[:rank].sqrt()
    return u[:, :rank] * root, root[:, None] * vh[:rank]


def channel_svd(weight: Tensor, rank: int) -> tuple[Tensor, Tensor]:
    """Conv weight (O, I, kh, kw) -> first (r, I, kh, kw) and second (O, r, 1, 1)."""
    out_ch, in_ch, kh, kw = weight.shape
    left, right = truncated_svd(weight.reshape(out_ch, -1), rank)
    return right.reshape(rank, in_ch, kh, kw), left.reshape(out_ch, rank, 1, 1)


def spatial_matrix(weight: Tensor) -> Tensor:
    """Jaderberg et al. scheme 2: W[o, c, h, w] as the (c*kh) x (o*kw) matrix M[(c,h), (o,w)]."""
    out_ch, in_ch, kh, kw = weight.shape
    return weight.permute(1, 2, 0, 3).reshape(in_ch * kh, out_ch * kw)


def spatial_svd(weight: Tensor, rank: int) -> tuple[Tensor, Tensor]:
    """Conv weight (O, I, kh, kw) -> vertical (r, I, kh, 1) and horizontal (O, r, 1, kw)."""
    out_ch, in_ch, kh, kw = weight.shape
    left, right = truncated_svd(spatial_matrix(weight), rank)
    vertical = left.T.reshape(rank, in_ch, kh, 1)
    horizontal = right.reshape(rank, out_ch, kw).permute(1, 0, 2).reshape(out_ch, rank, 1, kw)
    return vertical, horizontal


def tucker2(weight: Tensor, ranks: tuple[int, int], iterations: int) -> tuple[Tensor, Tensor, Tensor]:
    """Tucker-2 over the channel modes (Kim et al. 2016): W ~ core x0 U_out x1 U_in.
    HOSVD start, then `iterations` HOOI sweeps. Returns core (r_out, r_in, kh, kw), U_out (O, r_out),
    U_in (I, r_in), the factors with orthonormal columns."""
    with tl.backend_context("pytorch"):
        (core, (u_out, u_in)), _ = partial_tucker(
            _float64(weight), rank=list(ranks), modes=[0, 1], init="svd", n_iter_max=iterations, tol=1e-10
        )
    return core, u_out, u_in


def cp_max_rank(shape: tuple[int, ...]) -> int:
    """A CP rank at which an exact decomposition always exists: the product of all but the
    largest mode (one rank-1 term per index of the other modes)."""
    return math.prod(shape) // max(shape)


def cp4(weight: Tensor, rank: int, *, iterations: int, tol: float, seed: int) -> list[Tensor]:
    """CP of a conv weight (O, I, kh, kw) as four factor matrices [(O, R), (I, R), (kh, R), (kw, R)]
    with the component weights folded in and the column norms balanced across the factors.
    ALS (tensorly.parafac, SVD start) below the exact-rank bound; at the bound the exact CP is
    written down directly, since ALS need not find it."""
    if rank == cp_max_rank(tuple(weight.shape)):
        return _balance(torch.ones(rank, dtype=torch.float64), exact_cp(weight.detach().double()))
    with tl.backend_context("pytorch"), warnings.catch_warnings():
        # The SVD start has at most kh (or kw) columns for the spatial modes; tensorly fills the
        # rest randomly (seeded) and warns about it.
        warnings.filterwarnings("ignore", message="Trying to compute SVD", category=UserWarning)
        cp = parafac(_float64(weight), rank, n_iter_max=iterations, init="svd", tol=tol, random_state=seed)
    return _balance(cp.weights, list(cp.factors))


def exact_cp(tensor: Tensor) -> list[Tensor]:
    """Exact CP with rank = product of all modes but the largest: selector columns (one-hot) for
    the other modes, and the matching fibres of the tensor for the largest mode."""
    shape = tuple(tensor.shape)
    free = max(range(len(shape)), key=lambda m: shape[m])
    others = [m for m in range(len(shape)) if m != free]
    rank = cp_max_rank(shape)
    index = torch.unravel_index(torch.arange(rank), tuple(shape[m] for m in others))
    factors: list[Tensor] = [torch.empty(0)] * len(shape)
    for mode, idx in zip(others, index):
        factors[mode] = torch.nn.functional.one_hot(idx, shape[mode]).T.to(tensor.dtype)
    factors[free] = tensor.movedim(free, -1).reshape(rank, shape[free]).T
    return factors


def cp_to_tensor(factors: list[Tensor]) -> Tensor:
    return torch.einsum("ar,br,cr,dr->abcd", *factors)


def tucker_to_tensor(core: Tensor, u_out: Tensor, u_in: Tensor) -> Tensor:
    return torch.einsum("abhw,oa,ib->oihw", core, u_out, u_in)


def _balance(weights: Tensor, factors: list[Tensor]) -> list[Tensor]:
    """Fold the CP weights into the factors and give every factor's r-th column the same norm."""
    norms = torch.stack([f.norm(dim=0) for f in factors])  # (modes, R)
    scale = (weights.abs() * norms.prod(0)) ** (1.0 / len(factors))
    out = []
    for mode, factor in enumerate(factors):
        unit = factor / torch.where(norms[mode] > 0, norms[mode], torch.ones_like(norms[mode]))
        out.append(unit * scale * (torch.sign(weights) if mode == 0 else 1.0))
    return out


def _float64(weight: Tensor) -> Tensor:
    return weight.detach().to(device="cpu", dtype=torch.float64).contiguous()
