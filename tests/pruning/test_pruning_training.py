"""Training-time pruning through deepshrink.training callbacks: soft filter pruning, the network
slimming regulariser, masks held through fine-tuning, the AGP schedule, and iterative pruning with
the training engine as fine-tuner."""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn

from deepshrink.errors import ConfigError
from deepshrink.pruning import GradualPruning, MaskHolder, SlimmingRegularizer, SoftFilterPruning, prune, sparsify
from deepshrink.pruning.unstructured import agp_sparsity
from deepshrink.training import TrainConfig, train


def _cnn() -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 16, 3, padding=1, bias=False), nn.BatchNorm2d(16), nn.ReLU(),
        nn.Conv2d(16, 16, 3, padding=1, bias=False), nn.BatchNorm2d(16), nn.ReLU(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(16, 4),
    )


def _config(epochs: int = 2, **kw) -> TrainConfig:
    return TrainConfig(epochs=epochs, batch_size=16, lr=0.05, progress=False, **kw)


X16 = torch.randn(2, 3, 16, 16)


def test_soft_filter_pruning_zeroes_each_epoch_then_removes(tiny_data) -> None:
    sfp = SoftFilterPruning(X16, criterion="l2", ratio=0.5, round_to=1, protect_ends=False)
    model = train(_cnn(), tiny_data, _config(), callbacks=[sfp]).model
    removed = sfp.removal["0"]
    assert len(removed) == 8
    assert int(torch.count_nonzero(model[0].weight[removed])) == 0  # zeroed at the last epoch end
    result = sfp.finalize(model)
    assert result.model[0].out_channels == 8 and result.model[3].in_channels == 8
    assert result.report["verification"]["max_relative_error"] <= 1e-4
    assert sfp.state_dict() == {"removal": sfp.removal}


def test_slimming_regulariser_shrinks_bn_scales(tiny_data) -> None:
    plain = train(_cnn(), tiny_data, _config(3)).model
    slim = train(_cnn(), tiny_data, _config(3), callbacks=[SlimmingRegularizer(strength=0.5)]).model
    gamma = lambda m: (m[1].weight.abs().sum() + m[4].weight.abs().sum()).item()  # noqa: E731
    assert gamma(slim) < 0.8 * gamma(plain)
    with pytest.raises(ConfigError, match="has no BatchNorm scales"):
        SlimmingRegularizer().scales(nn.Linear(2, 2))


def test_masks_are_held_through_finetuning(tiny_data) -> None:
    result = sparsify(_cnn(), sparsity=0.5, protect_ends=False)
    model = train(result.model, tiny_data, _config(), callbacks=[MaskHolder(result.masks)]).model
    for name, mask in result.masks.items():
        weight = dict(model.named_parameters())[name]
        assert int(torch.count_nonzero(weight[~mask])) == 0
        assert bool((weight[mask] != 0).any())


def test_agp_schedule_values() -> None:
    assert agp_sparsity(0, 0.8, 0, 4) == 0.0
    assert agp_sparsity(2, 0.8, 0, 4) == pytest.approx(0.8 - 0.8 * 0.5 ** 3)
    assert agp_sparsity(4, 0.8, 0, 4) == pytest.approx(0.8)
    assert agp_sparsity(9, 0.8, 0, 4) == pytest.approx(0.8)
    values = [agp_sparsity(e, 0.8, 1, 5) for e in range(7)]
    assert values == sorted(values)


def test_gradual_pruning_reaches_the_final_sparsity(tiny_data) -> None:
    agp = GradualPruning(sparsity=0.6, start_epoch=0, end_epoch=2, protect_ends=False)
    model = train(_cnn(), tiny_data, _config(3), callbacks=[agp]).model
    weight = model[3].weight
    assert agp.current == pytest.approx(0.6)
    assert (weight == 0).float().mean().item() == pytest.approx(0.6, abs=0.01)


def test_iterative_pruning_with_the_training_engine(tiny_data) -> None:
    finetune = lambda m: train(m, tiny_data, _config(1)).model  # noqa: E731
    result = prune(_cnn(), X16, ratio=0.5, round_to=1, protect_ends=False, finetune=finetune,
                   schedule={"kind": "iterative", "steps": 2})
    assert result.model[0].out_channels == 8 and result.model[3].out_channels == 8
    assert [s["ratio"] for s in result.report["steps"]] == pytest.approx([0.25, 1 / 3])
