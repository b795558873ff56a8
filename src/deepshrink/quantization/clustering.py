"""Weight clustering (Deep Compression's trained quantisation, Han et al. 2016; seed 003 §2.4.3):
each layer's weights share k centroids found by k-means (linear initialisation, as the paper
found best), the indices are Huffman-coded, and the size is reported. Optional fine-tuning
trains the centroids: after every optimiser step each weight is reset to the mean of its
cluster, which is gradient descent on the centroids with the summed gradients of their weights
(up to a per-cluster step-size factor)."""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn as nn
from sklearn.cluster import KMeans

from deepshrink.errors import ConfigError
from deepshrink.models.spec import TRANSFORMS, derive
from deepshrink.quantization.huffman import encoded_bits, table_bits
from deepshrink.quantization.modules import QUANT_OF
from deepshrink.quantization.prepare import matches

_FIT_SAMPLES = 20000  # k-means on a subsample of large layers; every weight is then assigned


@dataclass
class ClusterResult:
    model: nn.Module
    assignments: dict[str, torch.Tensor]
    report: dict[str, Any] = field(default_factory=dict)


def _cluster_layer(w: torch.Tensor, clusters: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    values = w.detach().reshape(-1, 1).double().numpy()
    rng = np.random.default_rng(seed)
    sample = values if len(values) <= _FIT_SAMPLES else values[rng.choice(len(values), _FIT_SAMPLES, replace=False)]
    k = min(clusters, len(np.unique(sample)))
    init = np.linspace(values.min(), values.max(), k).reshape(-1, 1)
    kmeans = KMeans(n_clusters=k, init=init, n_init=1, max_iter=100, random_state=seed).fit(sample)
    centroids = torch.from_numpy(kmeans.cluster_centers_.ravel()).to(w.dtype)
    index = torch.from_numpy(kmeans.predict(values)).long().reshape(w.shape)
    return centroids, index


def layer_report(index: torch.Tensor, clusters: int) -> dict[str, int]:
    bits = max(1, math.ceil(math.log2(clusters)))
    huffman, lengths = encoded_bits(index.numpy())
    return {
        "weights": index.numel(),
        "clusters": clusters,
        "fp32_bytes": 4 * index.numel(),
        "fixed_bytes": math.ceil(index.numel() * bits / 8) + 4 * clusters,
        "huffman_bytes": math.ceil((huffman + table_bits(bits)) / 8) + 4 * clusters,
    }


@torch.no_grad()
def cluster_weights(model: nn.Module, clusters: int = 16, *, layers: tuple[str, ...] = ("*",), seed: int = 0) -> ClusterResult:
    """A new model whose conv/linear weights (names matching `layers`, fnmatch) take `clusters`
    shared values per layer. The report gives FP32, fixed-length-index and Huffman-coded sizes of
    the clustered weights (codebooks included; biases and other tensors are not counted)."""
    if isinstance(clusters, bool) or not isinstance(clusters, int) or not 2 <= clusters <= 256:
        raise ConfigError(f"clusters={clusters!r}: choose an integer from 2 to 256 (16 and 32 are typical)")
    new = copy.deepcopy(model)
    chosen = {n: m for n, m in new.named_modules() if type(m) in QUANT_OF and matches(n, layers)}
    if not chosen:
        raise ConfigError(f"layers {list(layers)} match no conv or linear layer")
    assignments, per_layer = {}, {}
    for name, layer in chosen.items():
        centroids, index = _cluster_layer(layer.weight, clusters, seed)
        layer.weight.copy_(centroids[index])
        assignments[name] = index
        per_layer[name] = layer_report(index, clusters)
    totals = {key: sum(r[key] for r in per_layer.values()) for key in ("fp32_bytes", "fixed_bytes", "huffman_bytes")}
    report = {"clusters": clusters, "layers": per_layer, **totals,
              "compression_fixed": totals["fp32_bytes"] / totals["fixed_bytes"],
              "compression_huffman": totals["fp32_bytes"] / totals["huffman_bytes"]}
    new = derive(model, new, "cluster", {"clusters": clusters, "layers": sorted(chosen)})
    return ClusterResult(new, assignments, report)


class CentroidProjection:
    """Training callback: after each optimiser step, set every clustered weight to the mean of
    its cluster, so only the k centroids per layer are learned."""

    def __init__(self, assignments: dict[str, torch.Tensor]) -> None:
        self.assignments = assignments

    @torch.no_grad()
    def on_step_end(self, state: Any) -> None:
        for name, index in self.assignments.items():
            weight = state.model.get_submodule(name).weight
            flat, idx = weight.reshape(-1), index.reshape(-1).to(weight.device)
            sums = torch.zeros(int(idx.max()) + 1, dtype=weight.dtype, device=weight.device).index_add_(0, idx, flat)
            counts = torch.bincount(idx, minlength=sums.numel()).clamp(min=1).to(weight.dtype)
            weight.copy_((sums / counts)[idx].reshape(weight.shape))


def finetune_centroids(result: ClusterResult, data: Any, config: Any = None) -> ClusterResult:
    """Fine-tune the centroids of a clustered model on `data` (a DataBundle) with the training
    engine; the assignments stay fixed, so the report's sizes still hold."""
    from deepshrink.training import train

    trained = train(result.model, data, config, callbacks=[CentroidProjection(result.assignments)])
    return ClusterResult(trained.model, result.assignments, {**result.report, "finetune_history": trained.history})


@TRANSFORMS.register("cluster")
def _replay_cluster(model: nn.Module, plan: dict) -> nn.Module:
    return model  # values only: shapes are unchanged, the saved weights hold the centroids
