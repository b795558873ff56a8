from __future__ import annotations

import numpy as np
import onnx
import pytest
import torch
from onnx import numpy_helper

import deepshrink
from deepshrink.errors import ExportError
from deepshrink.export import export_onnx, run_onnx
from deepshrink.quantization import export_int8_onnx, to_deploy
from deepshrink.quantization.int8_export import int8_kernel_share, optimized_op_counts
from quant_models import SIZE, normalized, tiny_resnet


def test_onnx_runtime_int8_agrees_with_fake_quant(trained, bundle, tmp_path):
    x, y = normalized(bundle.test)
    result = deepshrink.quantize(trained, bundle, onnx_path=tmp_path / "model.int8.onnx")
    deployed = run_onnx(result.onnx_path, x)
    with torch.no_grad():
        fake = result.model(x).numpy()
    agreement = (deployed.argmax(1) == fake.argmax(1)).mean()
    assert agreement >= 0.99
    top1_fake, top1_ort = (fake.argmax(1) == y.numpy()).mean(), (deployed.argmax(1) == y.numpy()).mean()
    assert abs(top1_fake - top1_ort) <= 0.002
    counts = optimized_op_counts(result.onnx_path, tmp_path / "opt.onnx")
    assert counts["QLinearConv"] == 2 and counts["QGemm"] == 1
    assert int8_kernel_share(counts) == 1.0


def test_residual_model_runs_as_int8_kernels_and_matches(tmp_path):
    model, x = tiny_resnet(), torch.randn(64, *SIZE)
    result = deepshrink.quantize(model, x)
    with torch.no_grad():
        fake = result.model(x)
        torch.testing.assert_close(to_deploy(result.model)(x), fake, rtol=0, atol=0)
    path = export_int8_onnx(result.model, tmp_path / "r.onnx", SIZE)
    counts = optimized_op_counts(path, tmp_path / "opt.onnx")
    assert counts["QLinearConv"] == 7 and counts["QLinearAdd"] == 3 and counts["QGemm"] == 1
    deployed = run_onnx(path, x)
    # Kernels accumulate in a different order; a value on a rounding boundary may move by one step.
    assert np.abs(deployed - fake.numpy()).mean() < 0.02 * fake.abs().mean().item()


def test_int8_file_stores_int8_weights_and_is_about_a_quarter(tmp_path):
    model = tiny_resnet()
    result = deepshrink.quantize(model, torch.randn(16, *SIZE))
    fp32 = export_onnx(model, tmp_path / "fp32.onnx", SIZE)
    int8 = export_int8_onnx(result.model, tmp_path / "int8.onnx", SIZE)
    graph = onnx.load(str(int8)).graph
    weights = [numpy_helper.to_array(t) for t in graph.initializer if t.dims and np.prod(t.dims) >= 64]
    assert weights and all(w.dtype == np.int8 for w in weights if w.ndim > 1)
    assert int8.stat().st_size <= 0.30 * fp32.stat().st_size


@pytest.mark.parametrize("options", [
    {"bits": 4, "first_last_bits": None},
    {"method": "qat", "weight": "twn", "activation": "lsq"},
    {"method": "qat", "weight": "bwn", "activation": "binary"},
])
def test_low_bit_models_export_exactly(trained, bundle, tmp_path, options):
    """Sub-8-bit grids ride in int8 containers (a Clip keeps activations on their grid)."""
    x, _ = normalized(bundle.test)
    config = {**options, "train": {"epochs": 0, "progress": False}}
    result = deepshrink.quantize(trained, bundle, config=config, onnx_path=tmp_path / "low.onnx")
    with torch.no_grad():
        fake = result.model(x).numpy()
    deployed = run_onnx(result.onnx_path, x)
    assert (deployed.argmax(1) == fake.argmax(1)).mean() >= 0.99
    codes = [numpy_helper.to_array(t) for t in onnx.load(str(result.onnx_path)).graph.initializer if t.data_type == onnx.TensorProto.INT8 and len(t.dims) == 4]
    middle = codes[1]  # conv2: the low-bit layer (first and last stay 8-bit)
    assert np.abs(middle).max() <= {4: 7}.get(options.get("bits"), 1)


@pytest.mark.parametrize("bits", [4, 2])
def test_low_bit_resnet_runs_every_conv_and_sum_as_int8_kernels_and_matches_exactly(bits, tmp_path):
    """Grids narrower than uint8 clip their codes after QuantizeLinear, and a tensor's narrower
    quantiser reads its wider one: nothing sits between a producer and its QuantizeLinear, so
    ONNX Runtime fuses every conv and residual sum (a float Clip there kept half in float)."""
    model, x = tiny_resnet(), torch.randn(64, *SIZE)
    result = deepshrink.quantize(model, x, config={"bits": bits}, onnx_path=tmp_path / "low.onnx")
    counts = optimized_op_counts(result.onnx_path, tmp_path / "opt.onnx")
    assert int8_kernel_share(counts) == 1.0 and counts["QLinearAdd"] == 3 and counts["Add"] == 0
    with torch.no_grad():
        fake = result.model(x).numpy()
    np.testing.assert_allclose(run_onnx(result.onnx_path, x), fake, rtol=0, atol=1e-5)


def test_midrise_weights_deploy_as_odd_int8_codes_and_match(trained, bundle, tmp_path):
    config = {"method": "qat", "bits": 2, "weight": "lsq_midrise", "train": {"epochs": 0, "progress": False}}
    result = deepshrink.quantize(trained, bundle, config=config, onnx_path=tmp_path / "m.onnx")
    graph = onnx.load(result.onnx_path).graph
    codes = {t.name: numpy_helper.to_array(t) for t in graph.initializer if t.data_type == onnx.TensorProto.INT8}
    inner = [c for c in codes.values() if c.ndim == 4 and set(np.unique(c)) == {-3, -1, 1, 3}]
    assert inner  # the 2-bit conv stores its four odd levels as int8
    x, _ = normalized(bundle.test)
    with torch.no_grad():
        fake = result.model(x).numpy()
    np.testing.assert_allclose(run_onnx(result.onnx_path, x), fake, rtol=0, atol=1e-4)


def test_codes_beyond_int8_are_an_export_error(trained, bundle, tmp_path):
    result = deepshrink.quantize(trained, bundle, config={"method": "qat", "weight": "dorefa", "first_last_bits": None, "train": {"epochs": 0, "progress": False},
                                                                "advanced": {"reduce_range": False}})
    with pytest.raises(ExportError, match=r"layer 'conv1': weight codes reach 255, beyond int8 \(DoReFaWeightQuant at 8 bits\)"):
        export_int8_onnx(result.model, tmp_path / "d.onnx")


def _compress(family: str, model: torch.nn.Module, x: torch.Tensor) -> torch.nn.Module:
    if family == "prune":
        return deepshrink.prune(model, ratio=0.3).model
    if family == "decompose":
        return deepshrink.decompose(model, method="tucker", ratio=1.5)
    return deepshrink.pruning.drop_branches(model, names=["layer2.0"], data=[x]).model


@pytest.mark.parametrize("family, kind", [("prune", "prune"), ("decompose", "decompose"), ("depth", "drop_branches")])
def test_pruned_and_decomposed_models_quantize_export_and_reload(family, kind, tmp_path):
    from quant_models import with_spec

    model = with_spec(tiny_resnet(), "quant_models:tiny_resnet")
    x = torch.randn(32, *SIZE)
    compressed = _compress(family, model, x)
    # a dropped branch leaves `shortcut + constant`: the constant is quantised too, so the sum stays a QLinearAdd
    result = deepshrink.quantize(compressed, x, onnx_path=tmp_path / "c.onnx")
    counts = optimized_op_counts(result.onnx_path, tmp_path / "opt.onnx")
    assert int8_kernel_share(counts) == 1.0 and counts["QLinearAdd"] == 3
    with torch.no_grad():
        fake = result.model(x)
    assert (run_onnx(result.onnx_path, x).argmax(1) == fake.argmax(1).numpy()).mean() >= 0.95
    deepshrink.save_model(result.model, tmp_path / "m")
    kinds = [t["kind"] for t in deepshrink.load(tmp_path / "m").deepshrink_spec.transforms]
    assert kinds == [kind, "fold_bn", "quantize"]
    with torch.no_grad():
        torch.testing.assert_close(deepshrink.load(tmp_path / "m")(x), fake, rtol=0, atol=0)


def test_signed_lsq_activations_ride_in_uint8_and_keep_int8_kernels(bundle, tmp_path):
    from deepshrink.quantization.prepare import act_quantizers

    result = deepshrink.quantize(tiny_resnet(), bundle, config={"method": "qat", "train": {"epochs": 0}}, onnx_path=tmp_path / "l.onnx")
    assert sum(q.signed for q in act_quantizers(result.model).values()) >= 3  # pre-add tensors are signed
    graph = onnx.load(str(result.onnx_path)).graph
    zero_points = {t.name: t for t in graph.initializer}
    q_types = {zero_points[n.input[2]].data_type for n in graph.node if n.op_type == "QuantizeLinear"}
    assert q_types == {onnx.TensorProto.UINT8}
    counts = optimized_op_counts(result.onnx_path, tmp_path / "opt.onnx")
    assert counts["QLinearConv"] == 7 and counts["QLinearAdd"] == 3
    x, _ = normalized(bundle.test)
    with torch.no_grad():
        fake = result.model(x).numpy()
    assert (run_onnx(result.onnx_path, x).argmax(1) == fake.argmax(1)).mean() >= 0.98
