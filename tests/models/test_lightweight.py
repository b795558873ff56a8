"""The lightweight zoo (MobileNetV1, ShuffleNetV2, SqueezeNet, GhostNet; CIFAR and ImageNet variants):
published parameter counts, stem strides, forward/backward, ONNX export against ONNX Runtime.
The registry-wide checks of test_zoo.py (fx tracing, ONNX, save/load) cover these models too."""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest
import torch
import torch.nn.functional as F

from deepshrink.errors import ConfigError
from deepshrink.models import MODELS, create_model, list_models
from deepshrink.models.zoo.shufflenet_v2 import channel_shuffle, stage_widths

FAMILIES = {
    "mobilenet_v1": "mobilenet", "shufflenet_v2": "shufflenet", "squeezenet": "squeezenet", "ghostnet": "ghostnet"
}  # fmt: skip
NAMES = [n for base in FAMILIES for n in (base, f"{base}_imagenet")]


def params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def example(name: str, batch: int) -> torch.Tensor:
    return torch.randn(batch, *MODELS.meta(name)["input_size"])


def test_registered_with_metadata() -> None:
    assert set(NAMES) <= set(list_models())
    for base, family in FAMILIES.items():
        cifar, imagenet = MODELS.meta(base), MODELS.meta(f"{base}_imagenet")
        assert (cifar["input_size"], cifar["num_classes"], cifar["family"]) == ((3, 32, 32), 10, family)
        assert (imagenet["input_size"], imagenet["num_classes"], imagenet["family"]) == ((3, 224, 224), 1000, family)


@pytest.mark.parametrize(
    ("name", "kwargs", "count"),
    [
        ("mobilenet_v1_imagenet", {}, 4_231_976),  # Howard et al. 2017, Table 8: 4.2M
        ("mobilenet_v1_imagenet", {"width_mult": 0.5}, 1_331_592),  # 1.3M
        ("mobilenet_v1_imagenet", {"width_mult": 0.25}, 470_072),  # 0.47M
        ("shufflenet_v2_imagenet", {}, 2_278_604),  # torchvision shufflenet_v2_x1_0
        ("shufflenet_v2_imagenet", {"width_mult": 0.5}, 1_366_792),  # x0_5
        ("shufflenet_v2_imagenet", {"width_mult": 2.0}, 7_393_996),  # x2_0
        ("squeezenet_imagenet", {}, 1_235_496),  # torchvision squeezenet1_1
        ("squeezenet_imagenet", {"version": "1.0"}, 1_248_424),  # squeezenet1_0
        ("ghostnet_imagenet", {}, 5_182_508),  # the authors' ghostnet.py at width 1.0 (paper: 5.2M)
        ("ghostnet_imagenet", {"width_mult": 0.5}, 2_587_292),  # timm ghostnet_050: 2.59M
        # CIFAR variants: strides do not change counts, only the classifier (and GhostNet's dropped dw conv).
        ("mobilenet_v1", {}, 4_231_976 - 1025 * 990),
        ("shufflenet_v2", {}, 2_278_604 - 1025 * 990),
        ("squeezenet", {}, 1_235_496 - 513 * 990),
        ("ghostnet", {}, 5_182_508 - 1281 * 990 - (48 * 9 + 2 * 48)),
    ],
)
def test_published_parameter_counts(name: str, kwargs: dict, count: int) -> None:
    model = create_model(name, **kwargs)
    assert params(model) == count
    if not kwargs:
        assert MODELS.meta(name)["params"] == count


@pytest.mark.parametrize(
    ("name", "layer", "side"),
    [
        ("mobilenet_v1", "blocks", 4), ("mobilenet_v1_imagenet", "blocks", 7),
        ("shufflenet_v2", "conv5", 4), ("shufflenet_v2_imagenet", "conv5", 7),
        ("squeezenet", "features", 4), ("squeezenet_imagenet", "features", 13),  # torchvision's 13×13 too
        ("ghostnet", "blocks", 4), ("ghostnet_imagenet", "blocks", 7),
    ],
)  # fmt: skip
def test_last_feature_map_size(name: str, layer: str, side: int) -> None:
    """CIFAR stems keep a 32×32 input at 4×4 before pooling; ImageNet stems downsample 32× as published."""
    model = create_model(name).eval()
    shapes = []
    model.get_submodule(layer).register_forward_hook(lambda _m, _i, out: shapes.append(out.shape[2:]))
    with torch.no_grad():
        model(example(name, 1))
    assert tuple(shapes[0]) == (side, side)


@pytest.mark.parametrize("name", NAMES)
def test_forward_and_backward(name: str) -> None:
    batch = 1 if name.endswith("_imagenet") else 2  # keep the 224×224 passes cheap
    model = create_model(name, num_classes=7).train()
    out = model(example(name, batch))
    assert out.shape == (batch, 7) and torch.isfinite(out).all()
    F.cross_entropy(out, torch.arange(batch)).backward()
    for pname, param in model.named_parameters():
        assert param.grad is not None and param.grad.abs().sum() > 0, f"{name}: no gradient for {pname}"


# The CIFAR variants go through test_zoo.py's registry-wide ONNX check; these are the 224×224 ones, at batch 1.
@pytest.mark.parametrize("name", [n for n in NAMES if n.endswith("_imagenet")])
def test_imagenet_onnx_export_agrees_with_onnxruntime(name: str, calibrated, tmp_path) -> None:
    model = calibrated(create_model(name))
    x = example(name, 1)
    path = tmp_path / f"{name}.onnx"
    torch.onnx.export(model, x, path, dynamo=False, opset_version=17, input_names=["input"], output_names=["logits"])
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    (got,) = session.run(None, {"input": x.numpy()})
    with torch.no_grad():
        want = model(x).numpy()
    assert got.shape == (1, MODELS.meta(name)["num_classes"])
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)


def test_channel_shuffle_interleaves_the_two_halves() -> None:
    x = torch.arange(6.0).reshape(1, 6, 1, 1).expand(2, 6, 3, 3)
    assert channel_shuffle(x, 2)[1, :, 2, 0].tolist() == [0, 3, 1, 4, 2, 5]


def test_shufflenet_other_widths_split_evenly() -> None:
    assert stage_widths(1.0) == (24, 116, 232, 464, 1024)
    widths = stage_widths(0.75)
    assert widths == (24, 88, 176, 348, 1024) and all(w % 4 == 0 for w in widths[1:4])
    out = create_model("shufflenet_v2", width_mult=0.75).eval()(example("shufflenet_v2", 1))
    assert out.shape == (1, 10)


@pytest.mark.parametrize(
    ("name", "kwargs", "message"),
    [
        ("mobilenet_v1", {"width_mult": 0}, r"model 'mobilenet_v1': width_mult must be in \(0, 4\], got 0"),
        ("shufflenet_v2_imagenet", {"width_mult": "1"}, r"model 'shufflenet_v2_imagenet': width_mult must be in"),
        ("squeezenet", {"version": "1.2"}, r"model 'squeezenet': version must be one of '1.0', '1.1', got '1.2'"),
        ("ghostnet", {"dropout": 1.0}, r"model 'ghostnet': dropout must be in \[0, 1\), got 1.0"),
        ("ghostnet_imagenet", {"num_classes": 0}, r"model 'ghostnet_imagenet': num_classes must be an integer >= 1"),
    ],
)
def test_bad_arguments_name_model_and_argument(name: str, kwargs: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        create_model(name, **kwargs)
