from __future__ import annotations

import pytest
import torch
import torch.nn as nn

import deepshrink
from deepshrink.quantization import fold_bn
from deepshrink.quantization.folding import fold_bn_into
from quant_models import SIZE, randomize_bn, tiny_resnet, with_spec


@pytest.mark.parametrize("bias", [False, True])
def test_conv_bn_fold_is_exact(bias):
    conv, bn = nn.Conv2d(3, 6, 3, padding=1, bias=bias), nn.BatchNorm2d(6)
    randomize_bn(bn)
    x = torch.randn(4, 3, 8, 8)
    folded = fold_bn_into(conv, bn)
    assert folded.bias is not None
    torch.testing.assert_close(folded(x), bn(conv(x)), rtol=1e-5, atol=1e-6)


def test_linear_bn1d_fold_is_exact():
    linear, bn = nn.Linear(5, 7), nn.BatchNorm1d(7)
    randomize_bn(bn)
    x = torch.randn(9, 5)
    torch.testing.assert_close(fold_bn_into(linear, bn)(x), bn(linear(x)), rtol=1e-5, atol=1e-6)


def test_fold_bn_on_a_resnet_removes_every_bn_and_keeps_the_function():
    model = tiny_resnet()
    folded = fold_bn(model)
    x = torch.randn(4, *SIZE)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in folded.modules())
    assert sum(isinstance(m, nn.BatchNorm2d) for m in model.modules()) == 7  # the original is untouched
    torch.testing.assert_close(folded(x), model(x), rtol=1e-4, atol=1e-5)


class _BNFirst(nn.Module):
    """A BN that follows no conv (input normalisation) must stay."""

    def __init__(self) -> None:
        super().__init__()
        self.bn0 = nn.BatchNorm2d(3)
        self.conv = nn.Conv2d(3, 4, 1)

    def forward(self, x):
        return self.conv(self.bn0(x))


def test_bn_without_a_preceding_conv_stays():
    model = randomize_bn(_BNFirst())
    folded = fold_bn(model)
    assert isinstance(folded.bn0, nn.BatchNorm2d)
    x = torch.randn(2, 3, 4, 4)
    torch.testing.assert_close(folded(x), model(x))


def test_folded_model_saves_and_reloads(tmp_path):
    model = with_spec(tiny_resnet(), "quant_models:tiny_resnet")
    folded = fold_bn(model)
    assert folded.deepshrink_spec.transforms[-1]["kind"] == "fold_bn"
    deepshrink.save_model(folded, tmp_path / "m")
    loaded = deepshrink.load(tmp_path / "m")
    x = torch.randn(2, *SIZE)
    torch.testing.assert_close(loaded(x), folded(x))


class _SharedHead(nn.Module):
    """One conv applied to two pyramid levels, each level with its own BatchNorm (FCOS-style)."""

    def __init__(self, num_classes: int = 4) -> None:  # num_classes: the zoo's builder signature, unused
        super().__init__()
        self.conv = nn.Conv2d(4, 4, 3, padding=1)
        self.norms = nn.ModuleList([nn.BatchNorm2d(4), nn.BatchNorm2d(4)])
        for bn in self.norms:
            randomize_bn(bn)
        with torch.no_grad():
            self.norms[1].weight.mul_(-2.0)  # randomize_bn draws the same statistics for both: make the levels differ

    def forward(self, x):
        small = nn.functional.avg_pool2d(x, 2)
        return self.norms[0](self.conv(x)).mean((2, 3)) + self.norms[1](self.conv(small)).mean((2, 3))


def test_a_conv_shared_across_levels_is_untied_and_each_call_folds_its_own_norm(tmp_path):
    model = with_spec(_SharedHead().eval(), "test_folding:_SharedHead")
    x = torch.randn(2, 4, 8, 8)
    folded = fold_bn(model)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in folded.modules())
    convs = [m for m in folded.modules() if isinstance(m, nn.Conv2d)]
    assert len(convs) == 2 and not torch.equal(convs[0].weight, convs[1].weight)  # each call: its own statistics
    torch.testing.assert_close(folded(x), model(x), rtol=1e-5, atol=1e-6)
    deepshrink.save_model(folded, tmp_path / "m")
    torch.testing.assert_close(deepshrink.load(tmp_path / "m")(x), folded(x), rtol=0, atol=0)


def test_without_untying_a_shared_conv_stays_shared_and_unfolded():
    model = _SharedHead().eval()
    x = torch.randn(2, 4, 8, 8)
    folded = fold_bn(model, untie=False)
    assert sum(isinstance(m, nn.BatchNorm2d) for m in folded.modules()) == 2
    torch.testing.assert_close(folded(x), model(x), rtol=1e-5, atol=1e-6)
