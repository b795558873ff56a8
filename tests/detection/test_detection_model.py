"""The detectors: registry entries, output layout, multipliers, backward through the FCOS losses,
fx tracing, ONNX export against ONNX Runtime (and the same detections after NMS), and the model
directory round trip."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from deepshrink.detection import DetectionObjective, export_detector, postprocess
from deepshrink.detection.models import FCOS
from deepshrink.errors import ConfigError
from deepshrink.export import ort_session, run_onnx
from deepshrink.models import MODELS, create_model, load, save_model

BACKBONES = ["resnet", "mobilenet_v2"]


def _targets() -> torch.Tensor:
    """Objects for every level of a 256x256 input: the regression ranges are 0-64, 64-128 and
    over 128 px for strides 8, 16, 32."""
    return torch.tensor([[[0, 4, 6, 30, 40], [2, 40, 20, 200, 180], [1, 0, 0, 256, 250]],
                         [[1, 10, 10, 50, 60], [-1, 0, 0, 0, 0], [-1, 0, 0, 0, 0]]], dtype=torch.float32)


@pytest.mark.parametrize("name", ["fcos_resnet", "fcos_mobilenet_v2"])
def test_registered_detectors_build_with_their_metadata(name: str) -> None:
    import deepshrink.detection.models  # noqa: F401  (registers the detectors)

    meta = MODELS.meta(name)
    assert meta["task"] == "detection" and meta["input_size"] == (3, 320, 320)
    model = create_model(name, num_classes=4, width_mult=0.25, head_depth=1)
    assert isinstance(model, FCOS) and model.deepshrink_spec.input_size == (3, 320, 320)
    assert sum(p.numel() for p in create_model(name).parameters()) == meta["params"]


@pytest.mark.parametrize("backbone", BACKBONES)
def test_output_layout_and_multipliers(backbone: str, tiny_detector) -> None:
    model = tiny_detector(backbone, num_classes=3).eval()
    with torch.no_grad():
        out = model(torch.randn(2, 3, 64, 96))
    assert out.shape == (2, 8 * 12 + 4 * 6 + 2 * 3, 5 + 3)  # strides 8, 16, 32 over 64x96
    assert (out[..., :4] >= 0).all() and torch.isfinite(out).all()
    small, wide, deep = (sum(p.numel() for p in tiny_detector(backbone, **kw).parameters())
                         for kw in ({}, {"width_mult": 0.5}, {"depth_mult": 1.0}))
    assert wide > small and deep > small


def test_bad_factory_arguments_name_the_argument() -> None:
    import deepshrink.detection.models  # noqa: F401

    with pytest.raises(ConfigError, match=r"fcos_resnet.*width_mult must be in \(0, 4\]"):
        create_model("fcos_resnet", width_mult=0)
    with pytest.raises(ConfigError, match=r"both sides must be multiples of 32"):
        postprocess(torch.zeros(1, 10, 8), (50, 64))


@pytest.mark.parametrize("backbone", BACKBONES)
def test_backward_reaches_every_parameter(backbone: str, tiny_detector) -> None:
    model = tiny_detector(backbone).train()
    objective = DetectionObjective(3, model.strides)
    loss, _ = objective(model, torch.randn(2, 3, 256, 256), _targets())
    loss.backward()
    assert torch.isfinite(loss) and objective.last_terms["positives"] > 0
    for name, param in model.named_parameters():
        assert param.grad is not None and torch.isfinite(param.grad).all(), name
        assert param.grad.abs().sum() > 0, f"zero gradient for {name}"


@pytest.mark.parametrize("backbone", BACKBONES)
def test_fx_trace_matches_eager(backbone: str, tiny_detector) -> None:
    model = tiny_detector(backbone).eval()
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(torch.fx.symbolic_trace(model)(x), model(x))


@pytest.mark.parametrize("backbone", BACKBONES)
def test_onnx_export_agrees_with_onnxruntime_before_and_after_nms(backbone: str, tiny_detector, tmp_path) -> None:
    model = tiny_detector(backbone).eval()
    for conv in model.head.modules():  # spread the scores: an untrained head scores every box alike
        if isinstance(conv, torch.nn.Conv2d):
            torch.nn.init.normal_(conv.weight, std=0.2)
    path = export_detector(model, tmp_path / "det.onnx", (3, 64, 64))
    x = torch.randn(3, 3, 64, 64)  # another batch size than exported: the batch axis is dynamic
    got = run_onnx(ort_session(path, threads=1), x)
    with torch.no_grad():
        want = model(x)
    np.testing.assert_allclose(got, want.numpy(), rtol=1e-4, atol=1e-4)
    cfg = {"score_threshold": 0.0, "max_detections": 20}
    for a, b in zip(postprocess(got, (64, 64), cfg), postprocess(want, (64, 64), cfg)):
        assert a.shape == b.shape == (20, 6)
        torch.testing.assert_close(a[:, 4], b[:, 4], rtol=1e-4, atol=1e-3)  # the ranked scores agree
        # Where two ranked scores are closer than the runtimes' rounding, NMS may keep either box,
        # so boxes are compared up to the first such tie.
        ties = (b[1:, 4] - b[:-1, 4]).abs() < 2e-4
        untied = int(ties.float().argmax()) + 1 if bool(ties.any()) else len(b)
        torch.testing.assert_close(a[:untied], b[:untied], rtol=1e-4, atol=1e-3)


def test_model_directory_round_trip(tmp_path) -> None:
    import deepshrink.detection.models  # noqa: F401

    model = create_model("fcos_mobilenet_v2", num_classes=2, width_mult=0.25, head_depth=1).eval()
    loaded = load(save_model(model, tmp_path / "det")).eval()
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(loaded(x), model(x))
    assert loaded.deepshrink_spec == model.deepshrink_spec
