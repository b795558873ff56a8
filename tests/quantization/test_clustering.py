from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import deepshrink
from deepshrink.errors import ConfigError
from deepshrink.quantization import cluster_weights, finetune_centroids
from deepshrink.quantization.huffman import canonical_codes, code_lengths, encoded_bits
from quant_models import normalized


def test_huffman_lengths_match_the_textbook_example():
    # a:45 b:13 c:12 d:16 e:9 f:5 (CLRS 16.3): lengths 1, 3, 3, 3, 4, 4; 224 bits in all
    counts = {0: 45, 1: 13, 2: 12, 3: 16, 4: 9, 5: 5}
    lengths = code_lengths(counts)
    assert lengths == {0: 1, 1: 3, 2: 3, 3: 3, 4: 4, 5: 4}
    assert sum(lengths[s] * c for s, c in counts.items()) == 224
    codes = canonical_codes(lengths)
    assert all(not b.startswith(a) for a in codes.values() for b in codes.values() if a != b)  # prefix-free


def test_huffman_beats_fixed_length_on_skewed_symbols_and_handles_one_symbol():
    symbols = np.random.default_rng(0).choice(16, size=10000, p=np.r_[[0.5, 0.2], np.full(14, 0.3 / 14)])
    bits, _ = encoded_bits(symbols)
    assert bits < 10000 * 4 * 0.7
    assert encoded_bits(np.zeros(7, dtype=int))[0] == 7


@pytest.mark.parametrize("clusters", [16, 32])
def test_clustering_shares_values_and_reports_sizes(trained, bundle, clusters):
    x, y = normalized(bundle.test)
    result = cluster_weights(trained, clusters)
    for name in ("conv1", "conv2", "fc"):
        assert result.model.get_submodule(name).weight.unique().numel() <= clusters
    report = result.report
    assert report["fp32_bytes"] == 4 * sum(trained.get_submodule(n).weight.numel() for n in ("conv1", "conv2", "fc"))
    assert report["huffman_bytes"] < report["fixed_bytes"] < report["fp32_bytes"] / (32 / math.log2(clusters)) * 1.3
    assert (result.model(x).argmax(1) == y).float().mean() >= 0.98
    assert result.model.deepshrink_spec.transforms[-1] == {"kind": "cluster", "plan": {"clusters": clusters, "layers": ["conv1", "conv2", "fc"]}}
    assert trained.conv1.weight.unique().numel() > clusters  # the original is untouched


def test_centroid_finetuning_keeps_the_clusters(trained, bundle):
    result = cluster_weights(trained, 4, layers=("conv*",))
    tuned = finetune_centroids(result, bundle, {"epochs": 1, "lr": 0.01, "batch_size": 64, "progress": False})
    for name, index in result.assignments.items():
        weight = tuned.model.get_submodule(name).weight.detach()
        assert weight.unique().numel() <= 4
        for k in index.unique():  # one value per cluster: the assignment did not change
            assert weight[index == k].unique().numel() == 1
    assert not torch.equal(tuned.model.conv1.weight, cluster_weights(trained, 4, layers=("conv*",)).model.conv1.weight)


def test_clustered_model_saves_and_reloads(trained, tmp_path):
    result = cluster_weights(trained, 16)
    deepshrink.save_model(result.model, tmp_path / "c")
    loaded = deepshrink.load(tmp_path / "c")
    torch.testing.assert_close(loaded.conv2.weight, result.model.conv2.weight)


def test_clustering_errors(trained):
    with pytest.raises(ConfigError, match="clusters=1: choose an integer from 2 to 256"):
        cluster_weights(trained, 1)
    with pytest.raises(ConfigError, match=r"layers \['head\*'\] match no conv or linear layer"):
        cluster_weights(trained, 16, layers=("head*",))
