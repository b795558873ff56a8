"""What a user sees when they ask the zoo for something it cannot build."""

from __future__ import annotations

import pytest

from deepshrink.errors import ConfigError, UnknownNameError
from deepshrink.models import create_model
from deepshrink.models.zoo import CifarResNet
from deepshrink.models.zoo.densenet import DenseNetBC


def test_unknown_name_suggests_close_matches() -> None:
    with pytest.raises(UnknownNameError, match=r"unknown model 'resnet23' \(did you mean: ") as info:
        create_model("resnet23")
    suggested = str(info.value).split("did you mean: ")[1].split("?")[0].split(", ")
    assert "resnet20" in suggested and "resnet32" in suggested
    assert "available: densenet_bc_100, digits_cnn," in str(info.value)


def test_unknown_keyword_names_the_keyword() -> None:
    with pytest.raises(ConfigError, match=r"model 'resnet20': bad arguments \['widht'\]"):
        create_model("resnet20", widht=2)


@pytest.mark.parametrize(
    ("name", "kwargs", "message"),
    [
        ("resnet20", {"num_classes": 0}, r"model 'resnet20': num_classes must be an integer >= 1, got 0"),
        ("vgg16_bn", {"num_classes": 2.5}, r"model 'vgg16_bn': num_classes must be an integer >= 1, got 2.5"),
        ("mobilenet_v2", {"width_mult": 0}, r"model 'mobilenet_v2': width_mult must be in \(0, 4\], got 0"),
        ("mobilenet_v2", {"dropout": 1.0}, r"model 'mobilenet_v2': dropout must be in \[0, 1\), got 1.0"),
        ("densenet_bc_100", {"compression": 1.5}, r"model 'densenet_bc_100': compression must be in \(0, 1\], got 1.5"),
        ("densenet_bc_100", {"growth_rate": 0}, r"model 'densenet_bc_100': growth_rate must be an integer >= 1"),
        ("digits_cnn", {"width": "32"}, r"model 'digits_cnn': width must be an integer >= 1, got '32'"),
    ],
)
def test_bad_factory_argument_names_model_and_argument(name: str, kwargs: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        create_model(name, **kwargs)


@pytest.mark.parametrize("depth", [21, 2, 110.0])
def test_resnet_depth_must_be_6n_plus_2(depth) -> None:
    with pytest.raises(ConfigError, match=rf"CIFAR ResNet: depth must be 6n \+ 2 .*got {depth!r}"):
        CifarResNet(depth)


def test_densenet_depth_must_be_6n_plus_4() -> None:
    with pytest.raises(ConfigError, match=r"DenseNet-BC: depth must be 6n \+ 4 .*got 99"):
        DenseNetBC(99)
