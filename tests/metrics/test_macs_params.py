from __future__ import annotations

import pytest
import torch
import torch.nn as nn

import deepshrink
from deepshrink.errors import ModelError
from deepshrink.metrics import count_params, macs
from deepshrink.metrics.counting import ROOT_KEY


@pytest.mark.parametrize(
    ("layer", "size", "expected"),
    [
        (nn.Conv2d(3, 16, 3, padding=1), (3, 32, 32), 16 * 3 * 9 * 32 * 32),  # 442,368
        (nn.Conv2d(3, 16, 3, padding=1, bias=False), (3, 32, 32), 442_368),
        (nn.Conv2d(8, 6, 3, stride=2), (8, 9, 9), 6 * 8 * 9 * 4 * 4),
        (nn.Conv2d(8, 8, 3, padding=1, groups=8), (8, 5, 5), 8 * 1 * 9 * 5 * 5),  # depthwise
        (nn.Linear(100, 10), (100,), 100 * 10),
        (nn.Linear(6, 3), (7, 6), 7 * 6 * 3),  # applied to every one of 7 tokens
    ],
)
def test_single_layer_macs_equal_the_hand_formula(layer, size, expected):
    total, per_layer = macs(layer, size)
    assert total == expected
    assert per_layer == {ROOT_KEY: expected}  # the layer is the model itself


def test_per_layer_names_are_module_paths_and_sum_to_total(tiny):
    total, per_layer = macs(tiny)  # input size (3, 8, 8) from the spec
    block = 4 * 4 * 9 * 64
    assert per_layer == {
        "stem": 4 * 3 * 9 * 64,
        "layer1.0.conv1": block,
        "layer1.0.conv2": block,
        "layer1.1.conv1": block,
        "layer1.1.conv2": block,
        ROOT_KEY: 4 * 4,  # the x @ mix matmul written in TinyNet.forward
        "fc": 4 * 5,
    }
    assert sum(per_layer.values()) == total


def test_macs_leaves_training_flags_and_bn_statistics_alone(tiny):
    tiny.train()
    stats = tiny.layer1[0].bn1.running_mean.clone()
    macs(tiny)
    assert all(m.training for m in tiny.modules())
    assert torch.equal(tiny.layer1[0].bn1.running_mean, stats)


def _resnet_cifar_macs(n: int) -> int:
    """He et al. CIFAR ResNet-(6n+2): 3x3 convs 16/32/64 wide on 32/16/8 maps, option-A shortcuts
    (no MACs), FC 64->10. Each stage conv costs 2,359,296 MACs except the two stride-2 ones."""
    stem, fc, full, strided = 16 * 3 * 9 * 32 * 32, 64 * 10, 16 * 16 * 9 * 32 * 32, 32 * 16 * 9 * 16 * 16
    return stem + fc + 2 * strided + (6 * n - 2) * full


@pytest.mark.parametrize(
    ("name", "n", "approx"), [("resnet20", 3, 40.6e6), ("resnet32", 5, 68.9e6), ("resnet56", 9, 125.5e6)]
)
def test_cifar_resnet_macs_match_the_hand_count(name, n, approx):
    total, per_layer = macs(deepshrink.create_model(name))
    assert total == _resnet_cifar_macs(n)
    assert total == pytest.approx(approx, rel=2e-3)
    assert len(per_layer) == 6 * n + 2 and sum(per_layer.values()) == total


def test_count_params_exact_and_counts_shared_weights_once():
    model = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2))
    assert count_params(model) == (3 * 4 + 4) + (4 * 2 + 2)
    tied = nn.Sequential(model[0], model[0])
    assert count_params(tied) == 16


class PlainTensorAttribute(nn.Module):
    """Keeps a weight outside the state dict, so the shapes-only pass cannot swap it out."""

    def __init__(self) -> None:
        super().__init__()
        self.weight = torch.randn(6, 4)  # not a Parameter or buffer

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.sum() > 1e9:  # data-dependent branch: needs real values
            return x
        return x @ self.weight


def test_models_that_need_real_values_are_still_counted():
    total, per_layer = macs(PlainTensorAttribute(), (3, 6))
    assert total == 3 * 6 * 4 and per_layer == {ROOT_KEY: 72}


def test_input_the_model_cannot_take_is_a_model_error(tiny):
    with pytest.raises(ModelError, match=r"tiny fails on an input of shape \(1, 5, 8, 8\)"):
        macs(tiny, (5, 8, 8))
