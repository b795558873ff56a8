"""The same checks for every registered zoo model: metadata, forward, backward, parameter count,
torch.fx tracing, ONNX export against ONNX Runtime, and the model-directory round trip."""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest
import torch
import torch.nn.functional as F

from deepshrink.models import MODELS, create_model, list_models, load, save_model

NAMES = [n for n in list_models() if MODELS.meta(n).get("task", "classification") == "classification"]


def example(name: str, batch: int) -> torch.Tensor:
    return torch.randn(batch, *MODELS.meta(name)["input_size"])


def test_zoo_lists_every_architecture() -> None:
    expected = {"resnet20", "resnet32", "resnet44", "resnet56", "resnet110"}
    expected |= {"vgg16_bn", "densenet_bc_100", "mobilenet_v2", "digits_cnn"}
    assert expected <= set(NAMES)


@pytest.mark.parametrize("name", NAMES)
def test_metadata_and_spec(name: str) -> None:
    meta = MODELS.meta(name)
    channels = meta["input_size"][0]
    assert len(meta["input_size"]) == 3 and len(meta["mean"]) == channels and len(meta["std"]) == channels
    assert meta["num_classes"] in (10, 1000) and meta["params"] > 0
    assert meta["family"] and meta["description"]
    spec = create_model(name).deepshrink_spec
    assert (spec.arch, spec.num_classes, spec.input_size) == (name, meta["num_classes"], tuple(meta["input_size"]))
    assert (spec.mean, spec.std) == (tuple(meta["mean"]), tuple(meta["std"]))


@pytest.mark.parametrize("name", NAMES)
def test_parameter_count_is_published(name: str) -> None:
    model = create_model(name)
    assert sum(p.numel() for p in model.parameters()) == MODELS.meta(name)["params"]


@pytest.mark.parametrize("name", NAMES)
def test_forward_shape_follows_num_classes(name: str) -> None:
    model = create_model(name, num_classes=7).eval()
    with torch.no_grad():
        out = model(example(name, 3))
    assert out.shape == (3, 7)
    assert torch.isfinite(out).all()


@pytest.mark.parametrize("name", NAMES)
def test_backward_reaches_every_parameter(name: str) -> None:
    model = create_model(name).train()
    loss = F.cross_entropy(model(example(name, 2)), torch.tensor([1, 3]))
    loss.backward()
    for pname, param in model.named_parameters():
        assert param.grad is not None, f"{name}: no gradient for {pname}"
        assert torch.isfinite(param.grad).all(), f"{name}: non-finite gradient for {pname}"
        assert param.grad.abs().sum() > 0, f"{name}: zero gradient for {pname}"


@pytest.mark.parametrize("name", NAMES)
def test_fx_trace_matches_eager(name: str, zoo_model) -> None:
    model = zoo_model(name)
    graph_module = torch.fx.symbolic_trace(model)
    x = example(name, 2)
    with torch.no_grad():
        assert torch.equal(graph_module(x), model(x))


@pytest.mark.parametrize("name", NAMES)
def test_onnx_export_agrees_with_onnxruntime(name: str, zoo_model, tmp_path) -> None:
    model = zoo_model(name)
    path = tmp_path / f"{name}.onnx"
    torch.onnx.export(
        model, example(name, 1), path, dynamo=False, opset_version=17,
        input_names=["input"], output_names=["logits"],
        dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}},
    )  # fmt: skip
    x = example(name, 3)  # another batch size than exported: the batch axis must stay dynamic
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1  # the test machine's cores are shared; spinning threads only contend
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    (got,) = session.run(None, {"input": x.numpy()})
    with torch.no_grad():
        want = model(x).numpy()
    assert got.shape == (3, MODELS.meta(name)["num_classes"])
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("name", NAMES)
def test_save_and_load_round_trip(name: str, zoo_model, tmp_path) -> None:
    model = zoo_model(name)
    loaded = load(save_model(model, tmp_path / name)).eval()
    x = example(name, 2)
    with torch.no_grad():
        assert torch.equal(loaded(x), model(x))
    assert loaded.deepshrink_spec == model.deepshrink_spec


@pytest.mark.parametrize(
    ("name", "kwargs", "params"),
    [
        # timm's mobilenetv2_050 has 1.97M parameters with 1000 classes: 700,490 with 10.
        ("mobilenet_v2", {"width_mult": 0.5}, 700_490),
        ("resnet20", {"pooled_shortcuts": True}, 269_722),
    ],
)
def test_factory_kwargs_round_trip(name: str, kwargs: dict, params: int, calibrated, tmp_path) -> None:
    model = calibrated(create_model(name, **kwargs))
    assert sum(p.numel() for p in model.parameters()) == params
    loaded = load(save_model(model, tmp_path / name)).eval()
    assert loaded.deepshrink_spec.kwargs == kwargs
    x = example(name, 2)
    with torch.no_grad():
        assert torch.equal(loaded(x), model(x))
