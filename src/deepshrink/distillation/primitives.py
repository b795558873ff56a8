"""Pure tensor maths behind the distillation losses, unit-tested alone.

Every function takes plain tensors (batch first) and returns a tensor; no modules, no state."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def soft_cross_entropy(logits: torch.Tensor, target_probs: torch.Tensor) -> torch.Tensor:
    """CE(q, p) = -sum_i q_i log p_i averaged over the batch (seed 001 eq. 1 with soft targets)."""
    return -(target_probs * F.log_softmax(logits, dim=-1)).sum(dim=-1).mean()


def softened(logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """softmax-T of seed 001 eq. 3: exp(z_i / T) / sum_j exp(z_j / T)."""
    return F.softmax(logits / temperature, dim=-1)


def match_spatial(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Resize a [B, C, H, W] map to `size`: average-pool when shrinking (keeps activation mass),
    bilinear when growing. A no-op when the size already matches."""
    if tuple(x.shape[-2:]) == tuple(size):
        return x
    if x.shape[-2] >= size[0] and x.shape[-1] >= size[1]:
        return F.adaptive_avg_pool2d(x, size)
    return F.interpolate(x, size=size, mode="bilinear", align_corners=False)


def attention_map(features: torch.Tensor, p: float = 2.0) -> torch.Tensor:
    """Zagoruyko & Komodakis spatial attention: mean over channels of |A|^p, flattened and
    L2-normalised per example -> [B, H*W]. Independent of the channel count."""
    return F.normalize(features.abs().pow(p).mean(dim=1).flatten(1), dim=1)


def similarity_matrix(features: torch.Tensor) -> torch.Tensor:
    """Tung & Mori: batch Gram matrix of flattened activations, rows L2-normalised -> [B, B]."""
    flat = features.flatten(1)
    return F.normalize(flat @ flat.t(), dim=1)


def fsp_matrix(first: torch.Tensor, second: torch.Tensor) -> torch.Tensor:
    """Yim et al. flow of solution procedure: G[c1, c2] = sum_xy F1[c1,x,y] F2[c2,x,y] / (H W)
    -> [B, C1, C2]. The larger map is pooled to the smaller one's resolution first."""
    h, w = min(first.shape[-2], second.shape[-2]), min(first.shape[-1], second.shape[-1])
    a = match_spatial(first, (h, w)).flatten(2)
    b = match_spatial(second, (h, w)).flatten(2)
    return a @ b.transpose(1, 2) / (h * w)


def pairwise_distances(embeddings: torch.Tensor, eps: float = 1e-12) -> torch.Tensor:
    """Euclidean distances [B, B]; the diagonal is exactly zero and sqrt never sees zero
    (its gradient there is infinite)."""
    e = embeddings.flatten(1)
    squared = (e.unsqueeze(0) - e.unsqueeze(1)).pow(2).sum(dim=-1)
    off_diagonal = ~torch.eye(len(e), dtype=torch.bool, device=e.device)
    return squared.clamp(min=eps).sqrt() * off_diagonal


def normalised_distances(embeddings: torch.Tensor) -> torch.Tensor:
    """RKD distance potential: pairwise distances divided by their mean over distinct pairs,
    so teacher and student embeddings of different scales and widths compare."""
    d = pairwise_distances(embeddings)
    n = len(d)
    mean = d.sum() / max(n * (n - 1), 1)
    return d / mean.clamp(min=1e-12)


def angle_potentials(embeddings: torch.Tensor) -> torch.Tensor:
    """RKD angle potential: cos of the angle at vertex j between e_i and e_k -> [B, B, B],
    entry [j, i, k] = <(e_i - e_j)/|.|, (e_k - e_j)/|.|>."""
    e = embeddings.flatten(1)
    directions = F.normalize(e.unsqueeze(0) - e.unsqueeze(1), dim=-1)  # [j, i, :] = e_i - e_j
    return directions @ directions.transpose(1, 2)


def pkt_probabilities(embeddings: torch.Tensor, eps: float = 1e-7) -> torch.Tensor:
    """Passalis & Tefas: cosine-similarity kernel shifted to [0, 1] and normalised per row into
    conditional probabilities p(j | i) -> [B, B]."""
    unit = F.normalize(embeddings.flatten(1), dim=1, eps=eps)
    kernel = (unit @ unit.t() + 1.0) / 2.0
    return kernel / kernel.sum(dim=1, keepdim=True)
