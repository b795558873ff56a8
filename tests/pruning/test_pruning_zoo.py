"""Registry-driven: every zoo model and every criterion at ratios 0.3 / 0.5 / 0.7 prunes, passes
verification, exports to ONNX and reloads from plan + weights to identical outputs; ratio 0 is
the identity. The full sweep is marked slow; the default suite covers every model once and every
criterion on ResNet-20. Also the headline ResNet-32 numbers."""

from __future__ import annotations

import pytest
import torch
from pruning_models import calibration

from deepshrink.export import export_onnx
from deepshrink.export.runtime import run_onnx
from deepshrink.models import MODELS, create_model, list_models, load, save_model
from deepshrink.pruning import CRITERIA, prune

CRITERION_NAMES = [name for name in CRITERIA.names() if not name.startswith("test_")]
RATIOS = (0.3, 0.5, 0.7)
FAST_MODELS = {"resnet20"}


def _large(name: str) -> bool:
    """ImageNet-resolution variants: same structure as their CIFAR twins, too slow for the default suite."""
    return max(MODELS.meta(name).get("input_size", (3, 32, 32))[1:]) > 64


def _inputs(model) -> torch.Tensor:
    return torch.randn(2, *model.deepshrink_spec.input_size, generator=torch.Generator().manual_seed(3))


def _output_energy(model, images, labels):
    """A loss for models without class logits (detectors): mean square of every output tensor."""
    outputs = model(images)
    tensors = [outputs] if isinstance(outputs, torch.Tensor) else list(_tensors(outputs))
    return sum(t.float().pow(2).mean() for t in tensors), outputs


def _tensors(value):
    if isinstance(value, torch.Tensor):
        yield value
    elif isinstance(value, dict):
        for v in value.values():
            yield from _tensors(v)
    elif isinstance(value, (list, tuple)):
        for v in value:
            yield from _tensors(v)


def _check(name: str, criterion: str, ratio: float, tmp_path, **options) -> None:
    model = create_model(name).eval()
    x = _inputs(model)
    size = model.deepshrink_spec.input_size
    data = calibration(1, classes=model.deepshrink_spec.num_classes, size=size[-1])
    data = [(images[:, : size[0]], labels) for images, labels in data]
    objective = _output_energy if MODELS.meta(name).get("task", "classification") != "classification" else None
    result = prune(model, x, criterion=criterion, ratio=ratio, protect_ends=False, data=data, objective=objective,
                   **options)
    assert result.report["verification"]["max_relative_error"] <= 1e-4
    if ratio > 0 and any(g["units"] > 8 for g in result.report["groups"]) and not result.report["unscored"]:
        assert result.report["params"]["after"] < result.report["params"]["before"]
    save_model(result.model, tmp_path)
    reloaded = load(tmp_path).eval()
    with torch.no_grad():
        expected = result.model.eval()(x)
        assert torch.equal(reloaded(x), expected)
    onnx_out = run_onnx(export_onnx(result.model, tmp_path / "m.onnx"), x.numpy())
    assert torch.allclose(torch.from_numpy(onnx_out), expected, atol=1e-4, rtol=1e-3)


def _cases():
    for name in list_models():
        for criterion in CRITERION_NAMES:
            for ratio in RATIOS:
                fast = not _large(name) and ratio == 0.5 and (name in FAST_MODELS or criterion == "fpgm")
                marks = () if fast else (pytest.mark.slow,)
                yield pytest.param(name, criterion, ratio, marks=marks, id=f"{name}-{criterion}-{ratio}")


@pytest.mark.parametrize("name, criterion, ratio", list(_cases()))
def test_zoo_prunes_verifies_exports_and_reloads(name: str, criterion: str, ratio: float, tmp_path) -> None:
    _check(name, criterion, ratio, tmp_path)


GROUP_FAST = {"resnet20", "mobilenet_v2", "shufflenet_v2"}  # option-A pads, depthwise consumers, split + concat


@pytest.mark.parametrize("name", [
    pytest.param(n, marks=() if n in GROUP_FAST else (pytest.mark.slow,)) for n in list_models()
])
def test_zoo_prunes_with_group_importance(name: str, tmp_path) -> None:
    """aggregate='group' reads every consumer's input columns: linears after flatten, grouped and
    depthwise convolutions, concat offsets."""
    _check(name, "l1", 0.5, tmp_path, aggregate="group")


@pytest.mark.parametrize("name", [pytest.param(n, marks=(pytest.mark.slow,) if _large(n) else ()) for n in list_models()])
def test_ratio_zero_is_the_identity(name: str) -> None:
    model = create_model(name).eval()
    x = _inputs(model)
    result = prune(model, x, ratio=0.0, protect_ends=False)
    with torch.no_grad():
        assert torch.equal(result.model(x), model(x))
    assert result.report["params"]["after"] == result.report["params"]["before"]


def _convs(model):
    return {n: m for n, m in model.named_modules() if isinstance(m, torch.nn.Conv2d)}


def test_resnet32_fpgm_half_through_option_a_shortcuts(tmp_path) -> None:
    """Block outputs pruned through the zero-padding shortcuts: every conv halves both ways."""
    model = create_model("resnet32").eval()
    result = prune(model, criterion="fpgm", ratio=0.5, protect_ends=False)
    before, after = _convs(model), _convs(result.model)
    assert all(after[n].out_channels == before[n].out_channels // 2 for n in before)
    assert all(after[n].in_channels == max(3, before[n].in_channels // 2) for n in before)
    macs = result.report["macs"]["after"] / result.report["macs"]["before"]
    assert 0.24 <= macs <= 0.26  # about -75 % MACs
    assert result.report["verification"]["max_relative_error"] <= 1e-4
    assert export_onnx(result.model, tmp_path / "a.onnx").is_file()


def test_resnet32_fpgm_half_with_block_outputs_protected(tmp_path) -> None:
    """Default protection (first conv and classifier) pins the block outputs: intra-block only."""
    model = create_model("resnet32").eval()
    result = prune(model, criterion="fpgm", ratio=0.5)
    before, after = _convs(model), _convs(result.model)
    for name in before:
        inner = name.endswith("conv1") and name != "conv1"
        assert after[name].out_channels == before[name].out_channels // (2 if inner else 1)
    macs = result.report["macs"]["after"] / result.report["macs"]["before"]
    assert 0.49 <= macs <= 0.51  # about -50 % MACs
    assert result.report["verification"]["max_relative_error"] <= 1e-4
    assert export_onnx(result.model, tmp_path / "b.onnx").is_file()


@pytest.mark.parametrize("name", ["resnet20", "mobilenet_v2", "shufflenet_v2"])
def test_report_macs_equal_the_shared_counter(name: str) -> None:
    from deepshrink.metrics import count_params, macs

    result = prune(create_model(name).eval(), ratio=0.5, protect_ends=False)
    assert result.report["macs"]["after"] == macs(result.model)[0]
    assert result.report["params"]["after"] == count_params(result.model)


@pytest.mark.parametrize("name", [pytest.param(n, marks=(pytest.mark.slow,) if _large(n) else ()) for n in list_models()])
def test_zoo_residual_branches_drop_verified_export_and_reload(name: str, tmp_path) -> None:
    """Depth pruning on every zoo model: the lowest-scored residual branch goes, or a model
    without one says so."""
    from deepshrink.errors import ModelError
    from deepshrink.pruning import drop_branches

    model = create_model(name).eval()
    x = _inputs(model)
    try:
        result = drop_branches(model, x, count=1)
    except ModelError as exc:
        assert "has no residual branch to drop" in str(exc)
        # plain chains, dense concatenation and channel shuffles have no residual sum
        assert name.removesuffix("_imagenet") in {"digits_cnn", "vgg16_bn", "squeezenet", "mobilenet_v1", "densenet_bc_100",
                                                  "shufflenet_v2"}
        return
    assert result.report["verified_rel_error"] <= 1e-4 and len(result.report["dropped"]) == 1
    save_model(result.model, tmp_path)
    with torch.no_grad():
        expected = result.model(x)
        reloaded = load(tmp_path).eval()(x)
    for got, want in zip(_tensors(reloaded), _tensors(expected)):
        assert torch.equal(got, want)
    onnx_out = run_onnx(export_onnx(result.model, tmp_path / "m.onnx"), x.numpy())
    torch.testing.assert_close(torch.from_numpy(onnx_out), next(iter(_tensors(expected))), atol=1e-4, rtol=1e-3)
