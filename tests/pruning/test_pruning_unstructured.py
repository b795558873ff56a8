"""Unstructured pruning: magnitude (layer-wise and global), N:M, protected ends, storage size,
and the sparse model's round trip through the model directory."""

from __future__ import annotations

import pytest
import torch
from pruning_models import TinyResNetA

from deepshrink.errors import ConfigError
from deepshrink.models import create_model, load, save_model
from deepshrink.pruning import sparsify, sparsity_masks, storage_report


def _density(weight: torch.Tensor) -> float:
    return int(torch.count_nonzero(weight)) / weight.numel()


def test_layerwise_magnitude_reaches_the_sparsity_in_every_layer() -> None:
    model = TinyResNetA(1)
    result = sparsify(model, sparsity=0.7)
    params = dict(result.model.named_parameters())
    assert "conv1.weight" not in result.masks and "linear.weight" not in result.masks  # protected ends
    for name in result.masks:
        assert _density(params[name]) == pytest.approx(0.3, abs=0.01)
    assert torch.equal(params["conv1.weight"], model.conv1.weight)
    assert _density(dict(model.named_parameters())["layer1.0.conv1.weight"]) == 1.0  # original untouched


def test_global_magnitude_uses_one_threshold() -> None:
    model = TinyResNetA(1)
    with torch.no_grad():
        model.layer3[0].conv1.weight.mul_(100)  # one layer of large weights keeps most of them
    masks = sparsity_masks(model, sparsity=0.5, scope="global", protect_ends=False)
    total = sum(m.numel() for m in masks.values())
    assert sum(int(m.sum()) for m in masks.values()) == pytest.approx(total * 0.5, abs=1)
    assert masks["layer3.0.conv1.weight"].float().mean() > 0.95


def test_two_four_pattern() -> None:
    result = sparsify(TinyResNetA(1), n_m=(2, 4))
    weight = dict(result.model.named_parameters())["layer2.0.conv2.weight"]
    groups = (weight.detach().movedim(1, -1).reshape(-1, 4) != 0).sum(1)
    assert bool((groups == 2).all())
    assert result.report["sparsity"] == pytest.approx(0.5)
    with pytest.raises(ConfigError, match=r"N:M 2:4 on 'conv1.weight': input dimension 3 is not a multiple of 4"):
        sparsify(TinyResNetA(1), n_m=(2, 4), protect_ends=False)
    with pytest.raises(ConfigError, match="n_m"):
        sparsify(TinyResNetA(1), n_m=(4, 2))


def test_storage_report_counts_bitmask_and_values() -> None:
    result = sparsify(TinyResNetA(1), sparsity=0.75)
    layer = result.report["layers"]["layer1.0.conv1.weight"]
    assert layer["numel"] == 16 * 16 * 9
    assert layer["sparse_bytes"] == 2304 // 8 + 576 * 4
    assert result.report["sparse_bytes"] < 0.4 * result.report["dense_bytes"]
    assert storage_report(TinyResNetA(1))["sparsity"] == 0.0


def test_sparse_model_saves_and_reloads(tmp_path) -> None:
    model = create_model("pruning_models:resnet_a")
    result = sparsify(model, sparsity=0.5)
    assert result.model.deepshrink_spec.transforms[-1]["kind"] == "sparsity"
    save_model(result.model, tmp_path)
    reloaded = load(tmp_path)
    assert all(torch.equal(a, b) for a, b in zip(reloaded.state_dict().values(), result.model.state_dict().values()))


def test_everything_protected_is_an_error() -> None:
    with pytest.raises(ConfigError, match="nothing to sparsify"):
        sparsify(torch.nn.Sequential(torch.nn.Conv2d(3, 4, 1), torch.nn.Linear(4, 2)))
