"""Depthwise-separable and Ghost transforms: the fits (exact where the maths allows, error as
predicted otherwise), whole-model surgery, save/load through the replay, and the errors users see."""

from __future__ import annotations

import io
import tarfile

import numpy as np
import onnxruntime as ort
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from PIL import Image

from deepshrink.errors import ConfigError, ModelError
from deepshrink.models import CIFAR_MEAN, CIFAR_STD, TRANSFORMS, create_model, load, load_weights, save_model
from deepshrink.nas import to_depthwise_separable, to_ghost
from deepshrink.nas.transforms import GhostConv, SeparableConv, fit_ghost, fit_separable, layer_inputs
from deepshrink.pruning import LayerSelection

TRANSFORM_FNS = {"depthwise_separable": to_depthwise_separable, "ghost": to_ghost}




def calibrate(model: nn.Module, images: torch.Tensor) -> nn.Module:
    """BatchNorm statistics from `images`, so eval-mode activations are O(1) in a fresh model."""
    for norm in model.modules():
        if isinstance(norm, nn.BatchNorm2d):
            norm.reset_running_stats()
            norm.momentum = None
    with torch.no_grad():
        model.train()(images)
    return model.eval()


@pytest.fixture(scope="module")
def resnet20() -> nn.Module:
    torch.manual_seed(0)
    return calibrate(create_model("resnet20"), torch.randn(16, 3, 32, 32))


def params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a - b).norm() / b.norm()).item()


# --- the fits --------------------------------------------------------------------------------------


def test_separable_fit_is_exact_for_separable_weights() -> None:
    pointwise, depthwise = torch.randn(8, 6), torch.randn(6, 3, 3)
    weight = pointwise[:, :, None, None] * depthwise[None]  # W[o, i] = P[o, i]·D[i]
    conv = nn.Conv2d(6, 8, 3, stride=2, padding=1, bias=True)
    conv.weight.data = weight
    model = to_depthwise_separable(nn.Sequential(conv), include=["0"])
    x = torch.randn(2, 6, 11, 11)
    assert isinstance(model[0], SeparableConv)
    assert rel(model(x), conv(x)) < 1e-5


def test_separable_fit_error_predicts_output_error_on_white_inputs() -> None:
    """E|conv(x, ΔW)|² = |ΔW|² per output pixel for i.i.d. unit inputs (no padding)."""
    torch.manual_seed(1)
    weight = torch.randn(32, 16, 3, 3)
    depthwise, pointwise, error = fit_separable(weight)
    _, s, _ = torch.linalg.svd(weight.permute(1, 0, 2, 3).reshape(16, 32, 9))
    assert error == pytest.approx((s[:, 1:].square().sum() / s.square().sum()).sqrt().item(), rel=1e-6)
    x = torch.randn(8, 16, 24, 24)
    out = F.conv2d(F.conv2d(x, depthwise, groups=16), pointwise)
    measured = rel(out, F.conv2d(x, weight))
    assert 0.8 < error < 0.95  # random filters are far from separable: rank 1 keeps ~20 % of the energy
    assert measured == pytest.approx(error, rel=0.05)


@pytest.mark.parametrize(("stride", "kernel", "shift"), [(1, 3, 1), (2, 5, 2)])
def test_ghost_fit_recovers_shifted_copies_exactly(stride: int, kernel: int, shift: int) -> None:
    """Filters that are scaled, shifted copies of others are exactly a primary conv + cheap 3×3 op
    (a one-pixel shift on the output grid is `stride` input pixels)."""
    torch.manual_seed(2)
    primary = torch.randn(4, 5, kernel, kernel)
    primary[..., kernel - shift :] = 0  # room to shift right inside the kernel
    copies = 0.5 * torch.roll(primary, shift, dims=-1)
    order = torch.randperm(8)
    conv = nn.Conv2d(5, 8, kernel, stride=stride, padding=kernel // 2, bias=True)
    conv.weight.data = torch.cat([primary, copies])[order]
    _, _, _, _, error = fit_ghost(conv.weight, 2, 3, (stride, stride))
    assert error < 1e-6
    ghost = to_ghost(nn.Sequential(conv), include=["0"])
    x = torch.randn(2, 5, 20, 20)
    inner = (slice(None), slice(None), slice(1, -1), slice(1, -1))  # cheap ops zero-pad the primary maps
    assert rel(ghost(x)[inner], conv(x)[inner]) < 1e-5


def test_ghost_with_uneven_ratio_keeps_channel_order() -> None:
    conv = nn.Conv2d(4, 7, 3, padding=1, bias=False)
    ghost = to_ghost(nn.Sequential(conv), ratio=3, include=["0"])[0]
    assert (ghost.primary.out_channels, ghost.cheap.out_channels) == (3, 6)
    assert sorted(ghost.order.tolist())[:3] == [0, 1, 2] and len(set(ghost.order.tolist())) == 7
    with torch.no_grad():  # the primary channels are copied, so they come out exactly, in place
        keep = (ghost.order < 3).nonzero().flatten()
        x = torch.randn(1, 4, 9, 9)
        assert torch.allclose(ghost(x)[:, keep], conv(x)[:, keep], atol=1e-6)


# --- whole models ----------------------------------------------------------------------------------


def expected_params(model: nn.Module, names: list[str], kind: str, ratio: int = 2) -> int:
    total = params(model)
    for name in names:
        conv = model.get_submodule(name)
        c_in, c_out, k = conv.in_channels, conv.out_channels, conv.kernel_size[0]
        if kind == "depthwise_separable":
            new = c_in * k * k + c_in * c_out
        else:
            m = -(-c_out // ratio)
            new = c_in * m * k * k + m * (ratio - 1) * 9
        total += new - conv.weight.numel()
    return total


@pytest.mark.parametrize("kind", TRANSFORM_FNS)
def test_transform_returns_smaller_new_model_and_keeps_original(kind: str, resnet20) -> None:
    before = {k: v.clone() for k, v in resnet20.state_dict().items()}
    new = TRANSFORM_FNS[kind](resnet20)
    plan = new.deepshrink_spec.transforms[-1]
    names = [layer["name"] for layer in plan["plan"]["layers"]]
    assert plan["kind"] == kind and len(names) == 18 and "conv1" not in names  # the stem is kept by default
    assert all(0 < layer["relative_error"] < 1 for layer in plan["plan"]["layers"])
    assert params(new) == expected_params(resnet20, names, kind)
    assert params(new) < params(resnet20) * (0.15 if kind == "depthwise_separable" else 0.55)
    assert resnet20.deepshrink_spec.transforms == []
    assert all(torch.equal(v, before[k]) for k, v in resnet20.state_dict().items())
    assert all(isinstance(resnet20.get_submodule(n), nn.Conv2d) for n in names)
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert new(x).shape == resnet20(x).shape == (2, 10)


@pytest.mark.parametrize("kind", TRANSFORM_FNS)
def test_calibration_refit_lowers_the_layer_output_error(kind: str, resnet20) -> None:
    images = torch.randn(4, 3, 32, 32)  # 4·32·32 = 4096 pixels: no subsampling, so errors are exact
    plain = TRANSFORM_FNS[kind](resnet20, include=["layer1"])
    fitted = TRANSFORM_FNS[kind](resnet20, include=["layer1"], calibration=images)
    inputs = layer_inputs(resnet20, ["layer1.0.conv1", "layer1.2.conv2"], images)
    layers = {layer["name"]: layer for layer in fitted.deepshrink_spec.transforms[-1]["plan"]["layers"]}
    for name, x in inputs.items():
        with torch.no_grad():
            want = resnet20.get_submodule(name)(x)
            before, after = rel(plain.get_submodule(name)(x), want), rel(fitted.get_submodule(name)(x), want)
        assert after == pytest.approx(layers[name]["output_error"], abs=1e-4)
        assert after < before - 0.02  # least squares on the real inputs beats the weight-space fit


def test_save_load_replays_both_transforms(resnet20, tmp_path) -> None:
    model = to_depthwise_separable(resnet20, include=["layer1", "layer2"])
    model = to_ghost(model, ratio=3, include=LayerSelection(regex=(r"layer3\..*conv\d",)))
    assert [t["kind"] for t in model.deepshrink_spec.transforms] == ["depthwise_separable", "ghost"]
    model = calibrate(model, torch.randn(8, 3, 32, 32))
    loaded = load(save_model(model, tmp_path / "m")).eval()
    assert isinstance(loaded.layer1[0].conv1, SeparableConv) and isinstance(loaded.layer3[2].conv2, GhostConv)
    assert torch.equal(loaded.layer3[0].conv1.order, model.layer3[0].conv1.order)
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(loaded(x), model(x))
    assert loaded.deepshrink_spec == model.deepshrink_spec


@pytest.mark.parametrize("kind", TRANSFORM_FNS)
def test_transformed_model_traces_and_exports_to_onnx(kind: str, resnet20, tmp_path) -> None:
    model = TRANSFORM_FNS[kind](resnet20, include=["layer2"])
    x = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        want = model(x)
        assert torch.equal(torch.fx.symbolic_trace(model)(x), want)
    path = tmp_path / f"{kind}.onnx"
    torch.onnx.export(model, x, path, dynamo=False, opset_version=17, input_names=["input"])
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    (got,) = session.run(None, {"input": x.numpy()})
    np.testing.assert_allclose(got, want.numpy(), rtol=1e-4, atol=1e-4)


# --- errors ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"include": ["layer1.0.conv9"]}, r" include: name 'layer1.0.conv9' matches no layer \(did you mean: layer1.0"),
        ({"exclude": ["layer4"]}, r" exclude: name 'layer4' matches no layer"),
        ({"include": ["layer1.0.bn1"]}, r" include: layer 'layer1.0.bn1' is a BatchNorm2d, not a Conv2d"),
        ({"include": "layer1.0.conv1", "exclude": ["layer1"]}, r": no convolution left to replace"),
    ],
)  # fmt: skip
def test_selection_errors_name_the_layer(kwargs: dict, message: str, resnet20) -> None:
    with pytest.raises(ConfigError, match="to_depthwise_separable" + message):
        to_depthwise_separable(resnet20, **kwargs)


def test_regex_and_type_selections_skip_ineligible_convolutions() -> None:
    model = create_model("mobilenet_v2")  # one 3×3 dense conv (the stem); the rest are 1×1 or depthwise
    new = to_depthwise_separable(model, include=LayerSelection(types=("Conv2d",)))
    assert [layer["name"] for layer in new.deepshrink_spec.transforms[-1]["plan"]["layers"]] == ["stem.conv"]


def test_ineligible_convolutions_are_named() -> None:
    model = nn.Sequential(nn.Conv2d(4, 8, 1), nn.Conv2d(8, 8, 3, groups=8), nn.Conv2d(8, 8, 3, dilation=2))
    with pytest.raises(ConfigError, match=r"layer '0' is a 1×1 convolution \(nothing to separate\)"):
        to_depthwise_separable(model, include=["0"])
    with pytest.raises(ConfigError, match=r"to_ghost include: layer '1' is a grouped convolution \(groups=8\)"):
        to_ghost(model, include=["1"])
    with pytest.raises(ConfigError, match=r"to_ghost include: layer '2' is dilated"):
        to_ghost(model, include=["2"])


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"ratio": 1}, r"ratio must be an integer >= 2, got 1"),
        ({"dw_size": 2}, r"dw_size must be an odd integer >= 1, got 2"),
    ],
)
def test_ghost_options_are_checked(kwargs: dict, message: str, resnet20) -> None:
    with pytest.raises(ConfigError, match="to_ghost: " + message):
        to_ghost(resnet20, **kwargs)


def test_replay_names_the_layer_a_plan_does_not_fit() -> None:
    plan = {"ratio": 2, "dw_size": 3, "layers": [{"name": "layer9.conv"}]}
    with pytest.raises(ModelError, match=r"replaying 'ghost': the model has no layer 'layer9.conv'"):
        TRANSFORMS.get("ghost")(create_model("resnet20"), plan)
    with pytest.raises(ModelError, match=r"replaying 'depthwise_separable': layer 'linear' is a Linear, not a Conv2d"):
        TRANSFORMS.get("depthwise_separable")(create_model("resnet20"), {"layers": [{"name": "linear"}]})


# --- on trained weights and real images ------------------------------------------------------------


def first_test_images(archive, per_class: int) -> torch.Tensor:
    """The first `per_class` test images of each class (the archive lists the test split first)."""
    images = []
    with tarfile.open(archive) as tar:
        for member in tar:
            parts = member.name.split("/")
            if len(parts) > 1 and parts[1] == "train":
                break
            if member.isfile() and len(parts) == 4 and int(parts[3].split(".")[0]) < per_class:
                images.append(np.asarray(Image.open(io.BytesIO(tar.extractfile(member).read())).convert("RGB")))
    x = torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).float() / 255
    return (x - torch.tensor(CIFAR_MEAN)[:, None, None]) / torch.tensor(CIFAR_STD)[:, None, None]


@pytest.mark.shared
def test_fit_errors_on_trained_resnet20(shared_dir) -> None:
    """Per-layer relative output errors on real images (mean over the 18 replaced convs), measured:
    separable 0.62 with the weight-space fit / 0.41 refitted on calibration images, Ghost (ratio 2)
    0.55 / 0.47. Calibration and measurement use disjoint halves of 200 test images."""
    model = load_weights(create_model("resnet20"), shared_dir / "weights" / "cifar10-jpeg" / "resnet20.pth").eval()
    images = first_test_images(shared_dir / "datasets" / "cifar10-jpeg.tar.gz", per_class=20)
    calibration, held_out = images[::2], images[1::2]
    names = [n for n, m in model.named_modules() if isinstance(m, nn.Conv2d) and n != "conv1"]
    inputs = layer_inputs(model, names, held_out)
    errors = {}
    for kind, fn in TRANSFORM_FNS.items():
        for refit in (False, True):
            new = fn(model, calibration=calibration if refit else None)
            with torch.no_grad():
                per_layer = [rel(new.get_submodule(n)(x), model.get_submodule(n)(x)) for n, x in inputs.items()]
            errors[kind, refit] = float(np.mean(per_layer))
    assert errors["depthwise_separable", False] == pytest.approx(0.62, abs=0.03)
    assert errors["depthwise_separable", True] == pytest.approx(0.41, abs=0.03)
    assert errors["ghost", False] == pytest.approx(0.55, abs=0.03)
    assert errors["ghost", True] == pytest.approx(0.47, abs=0.03)
