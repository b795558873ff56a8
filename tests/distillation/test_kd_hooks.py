"""The forward-hook manager and the default feature taps."""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from deepshrink.distillation.hooks import FeatureHooks
from deepshrink.distillation.taps import TapKind, default_taps, probe_layout, stage_paths, tap_shape
from deepshrink.errors import ConfigError
from deepshrink.models import create_model


class Net(nn.Module):
    def __init__(self, width: int = 4) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, width, 3, padding=1)
        self.layer1 = nn.Sequential(nn.Conv2d(width, width, 3, padding=1), nn.ReLU())
        self.layer2 = nn.Sequential(nn.Conv2d(width, 2 * width, 3, stride=2, padding=1), nn.ReLU())
        self.fc = nn.Linear(2 * width, 5)

    def forward(self, x):
        x = self.layer2(self.layer1(self.stem(x)))
        return self.fc(F.adaptive_avg_pool2d(x, 1).flatten(1))


def test_hooks_capture_outputs_and_inputs_by_path():
    net = Net()
    x = torch.randn(2, 3, 8, 8)
    with FeatureHooks(net, ["layer1", "layer2.0", "fc:input"]) as hooks:
        net(x)
        got = hooks.pop()
    mid = net.layer1(net.stem(x))
    assert torch.allclose(got["layer1"], mid)
    assert torch.allclose(got["layer2.0"], net.layer2[0](mid))
    assert torch.allclose(got["fc:input"], net.layer2(mid).mean(dim=(2, 3)), atol=1e-6)
    assert got["fc:input"].shape == (2, 8)


def test_pop_clears_and_removed_hooks_capture_nothing():
    net = Net()
    hooks = FeatureHooks(net, ["layer1"])
    net(torch.randn(1, 3, 8, 8))
    assert set(hooks.pop()) == {"layer1"}
    with pytest.raises(ConfigError, match="feature path 'layer1' did not run in the forward pass of Net"):
        hooks.pop()
    hooks.remove()
    net(torch.randn(1, 3, 8, 8))
    assert all(not m._forward_hooks for m in net.modules())


def test_unknown_path_lists_the_closest_module_names():
    with pytest.raises(ConfigError) as info:
        FeatureHooks(create_model("resnet20"), ["layer4"])
    message = str(info.value)
    assert message.startswith("feature path 'layer4' is not a module of CifarResNet (did you mean: ")
    assert "layer1" in message and "layer3" in message


def test_unknown_path_without_close_names_lists_top_level_modules():
    with pytest.raises(ConfigError, match=r"'zzz' is not a module of Net; top-level modules: stem, layer1, layer2, fc"):
        FeatureHooks(Net(), ["zzz"])
    with pytest.raises(ConfigError, match=r"feature path 'fc:output': the only suffix is ':input'"):
        FeatureHooks(Net(), ["fc:output"])


def test_failed_registration_leaves_no_hooks_behind():
    net = Net()
    with pytest.raises(ConfigError):
        FeatureHooks(net, ["layer1", "nope"])
    assert all(not m._forward_hooks for m in net.modules())


def test_default_taps_of_cifar_resnets_are_stages_and_embedding():
    for name in ("resnet20", "resnet56"):
        layout = probe_layout(create_model(name), (3, 32, 32))
        assert stage_paths(layout) == ["layer1", "layer2", "layer3"]
        assert default_taps(layout, TapKind.MIDDLE_STAGE, name) == ["layer2"]
        assert default_taps(layout, TapKind.LAST_STAGE, name) == ["layer3"]
        assert default_taps(layout, TapKind.EMBEDDING, name) == ["linear:input"]
        assert tap_shape(layout, "layer2") == (32, 16, 16)
        assert tap_shape(layout, "linear:input") == (64,)
        assert layout.logits == (10,)


def test_single_resolution_models_use_top_level_blocks():
    layout = probe_layout(create_model("digits_cnn"), (1, 8, 8))
    assert stage_paths(layout) == ["block1", "block2"]


def test_probe_restores_training_mode_and_rejects_non_logits():
    net = Net().train()
    probe_layout(net, (3, 8, 8))
    assert net.training
    message = r"Sequential: distillation needs a classifier returning \[batch, classes\] logits"
    with pytest.raises(ConfigError, match=message):
        probe_layout(nn.Sequential(nn.Conv2d(3, 2, 1)), (3, 8, 8))
