"""BatchNorm during QAT (bn_qat): starts as the folded layer, trains with batch statistics,
folds back to exactly its eval function."""

from __future__ import annotations

import copy

import pytest
import torch

import deepshrink
from deepshrink.quantization import prepare_model
from deepshrink.quantization.bn_qat import BatchNormQAT, attach_batchnorm, freeze_batchnorm, has_batchnorm_qat
from deepshrink.quantization.config import QuantizeConfig
from deepshrink.models import create_model
from quant_models import normalized

TRAIN = {"epochs": 2, "lr": 0.01, "batch_size": 32, "optimizer": "adamw", "weight_decay": 0.0, "progress": False}


@pytest.fixture
def prepared():
    torch.manual_seed(0)
    model = create_model("resnet20").eval()
    for module in model.modules():  # statistics far from the identity, as after training
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean.uniform_(-0.5, 0.5)
            module.running_var.uniform_(0.5, 2.0)
            module.weight.data.uniform_(-1.0, 1.0)
    x = torch.randn(32, 3, 32, 32)
    _, quantized, plan = prepare_model(model, QuantizeConfig(method="qat", bits=4), [x])
    return quantized.eval(), plan, x


def test_the_wrapped_model_starts_as_the_folded_one(prepared):
    quantized, plan, x = prepared
    assert len(plan["bn_folded"]) == 19  # every conv of ResNet-20 had a BatchNorm
    wrapped = attach_batchnorm(copy.deepcopy(quantized), plan["bn_folded"], [x]).eval()
    assert sum(isinstance(m, BatchNormQAT) for m in wrapped.modules()) == 19
    with torch.no_grad():
        torch.testing.assert_close(wrapped(x), quantized(x), rtol=0, atol=1e-6)


def test_training_mode_normalises_with_batch_statistics(prepared):
    quantized, plan, x = prepared
    wrapped = attach_batchnorm(copy.deepcopy(quantized), plan["bn_folded"], [x]).train()
    captured = {}
    bn = wrapped.get_submodule("layer1.0.conv1").bn
    bn.register_forward_hook(lambda m, i, o: captured.update(out=o, inp=i[0]))
    wrapped(x).sum().backward()
    normalised = (captured["out"] - bn.bias.view(1, -1, 1, 1)) / bn.weight.view(1, -1, 1, 1)
    torch.testing.assert_close(normalised.mean((0, 2, 3)), torch.zeros(16), rtol=0, atol=1e-4)
    assert bn.weight.grad is not None and wrapped.get_submodule("layer1.0.conv1").layer.weight_quant.scale.grad is not None


def test_freezing_folds_back_to_the_exact_eval_function(prepared):
    quantized, plan, x = prepared
    wrapped = attach_batchnorm(copy.deepcopy(quantized), plan["bn_folded"], [x])
    with torch.no_grad():  # as if trained: statistics and affine parameters moved
        for module in wrapped.modules():
            if isinstance(module, BatchNormQAT):
                module.bn.running_mean.add_(0.1)
                module.bn.running_var.mul_(1.3)
                module.bn.weight.mul_(-1.1)  # a sign flip too: the weight grid is symmetric
        expected = wrapped.eval()(x)
        frozen = freeze_batchnorm(wrapped).eval()
        assert not has_batchnorm_qat(frozen)
        torch.testing.assert_close(frozen(x), expected, rtol=0, atol=1e-6)
    names = {n for n, _ in frozen.named_parameters()}
    assert names == {n for n, _ in quantized.named_parameters()}  # the plain fake-quant model again


def test_qat_with_batchnorm_returns_a_plain_model_that_exports(trained, bundle, tmp_path):
    config = {"method": "qat", "bits": 4, "train": TRAIN, "advanced": {"keep_calibrated": False, "qat_batchnorm": True}}
    result = deepshrink.quantize(trained, bundle, config=config, onnx_path=tmp_path / "m.onnx")
    assert not has_batchnorm_qat(result.model) and result.onnx_path.is_file()
    x, y = normalized(bundle.test)
    with torch.no_grad():
        assert (result.model(x).argmax(1) == y).float().mean() >= 0.9
    off = deepshrink.quantize(trained, bundle, config={**config, "advanced": {"keep_calibrated": False, "qat_batchnorm": False}})
    assert not torch.allclose(off.model.conv2.weight, result.model.conv2.weight)  # the option changes the training
