"""Pure tensor maths for pruning, unit-tested alone: filter norms, FPGM distances, feature-map
ranks, kept-count rounding, magnitude and N:M masks, sparse storage sizes."""

from __future__ import annotations

import math

import torch


def row_norms(matrix: torch.Tensor, p: int) -> torch.Tensor:
    """L-p norm of each row (filter) of a weight flattened to [rows, -1]."""
    return matrix.detach().flatten(1).float().norm(p=p, dim=1)


def input_columns(weight: torch.Tensor) -> torch.Tensor:
    """A weight [out, in, ...] seen from its inputs: one row per input channel."""
    return weight.detach().transpose(0, 1)


def fpgm_scores(matrix: torch.Tensor) -> torch.Tensor:
    """Sum of Euclidean distances from each filter to all others (He et al. 2019). Filters near
    the geometric median have the smallest sum: they are the most replaceable."""
    rows = matrix.detach().flatten(1).float()
    return torch.cdist(rows.unsqueeze(0), rows.unsqueeze(0)).squeeze(0).sum(dim=1)


def feature_map_ranks(maps: torch.Tensor, cdim: int = 1) -> torch.Tensor:
    """Average matrix rank of each channel's feature maps over the batch (HRank, Lin et al. 2020)."""
    maps = maps.detach().float().movedim(cdim, 1)
    if maps.dim() < 4:
        raise ValueError(f"feature-map rank needs [N, C, H, W] activations, got shape {tuple(maps.shape)}")
    if maps.dim() == 5:  # 3-D convolutions: stack depth slices into one matrix per channel
        maps = maps.flatten(2, 3)
    return torch.linalg.matrix_rank(maps).float().mean(dim=0)


def normalise(scores: torch.Tensor) -> torch.Tensor:
    """Scores divided by their mean, so layers (or groups) of different scales weigh the same."""
    mean = scores.abs().mean()
    return scores / mean if mean > 0 else scores


def kept_count(size: int, ratio: float, multiple: int = 1) -> int:
    """Units kept when removing `ratio` of `size`, rounded to the nearest multiple of `multiple`,
    never below one multiple nor above `size`. Ratio 0 keeps everything."""
    target = size * (1.0 - ratio)
    if ratio <= 0.0 or target >= size:
        return size
    if size <= multiple:
        return size  # too small to prune in steps of `multiple`
    rounded = int(math.floor(target / multiple + 0.5)) * multiple
    return max(multiple, min(size, rounded))


def magnitude_mask(weight: torch.Tensor, sparsity: float) -> torch.Tensor:
    """Keep the largest-magnitude (1 - sparsity) fraction of the weights."""
    return threshold_mask(weight, magnitude_threshold([weight], sparsity))


def magnitude_threshold(weights: list[torch.Tensor], sparsity: float) -> float:
    """The magnitude below which `sparsity` of all the given weights fall (ties pruned together)."""
    values = torch.cat([w.detach().abs().flatten().float() for w in weights])
    count = int(sparsity * values.numel())
    if count <= 0:
        return -1.0
    return float(torch.kthvalue(values, count).values)


def threshold_mask(weight: torch.Tensor, threshold: float) -> torch.Tensor:
    return weight.detach().abs() > threshold


def n_m_mask(weight: torch.Tensor, n: int, m: int) -> torch.Tensor:
    """Keep the n largest of every m consecutive weights along the input dimension (2:4 sparsity).
    Convolution weights [O, I, kh, kw] are grouped along I for each (O, kh, kw), as sparse tensor
    cores read them."""
    w = weight.detach()
    moved = w.movedim(1, -1) if w.dim() > 2 else w  # [O, kh, kw, I]
    if moved.shape[-1] % m:
        raise ValueError(f"input dimension {moved.shape[-1]} is not a multiple of {m}")
    blocks = moved.abs().reshape(-1, m)
    keep = torch.zeros_like(blocks, dtype=torch.bool)
    keep.scatter_(1, blocks.topk(n, dim=1).indices, True)
    keep = keep.reshape(moved.shape)
    return keep.movedim(-1, 1) if w.dim() > 2 else keep


def sparse_storage_bytes(weight: torch.Tensor, value_bytes: int | None = None) -> int:
    """Bytes to store a weight as a bitmask (1 bit per entry) plus its non-zero values."""
    value_bytes = value_bytes or weight.element_size()
    return math.ceil(weight.numel() / 8) + int(torch.count_nonzero(weight)) * value_bytes
