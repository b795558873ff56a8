"""Structured pruning through a detector: interpolate (top-down path), add and concat across
scales (PAN), towers shared by three levels with per-level BatchNorm. Surgery is verified by the
pruning engine itself (every layer against the original with the pruned channels zeroed); here we
also check the detections after NMS and the model-directory replay."""

from __future__ import annotations

import pytest
import torch

from deepshrink.detection import postprocess
from deepshrink.models import load, save_model
from deepshrink.pruning import prune


@pytest.mark.parametrize("backbone", ["resnet", "mobilenet_v2"])
@pytest.mark.parametrize("ratio", [0.3, 0.5])
def test_verified_pruning_of_neck_and_shared_heads(backbone: str, ratio: float, tmp_path) -> None:
    import deepshrink.detection.models  # noqa: F401  (registers the detectors for `load`)
    from deepshrink.models import create_model

    model = create_model(f"fcos_{backbone}", num_classes=3, width_mult=0.5, depth_mult=0.5, neck_width=32,
                         head_depth=2).eval()
    x = torch.randn(2, 3, 64, 64)
    result = prune(model, x, ratio=ratio, protect_ends=False)
    report = result.report
    assert report["verification"]["max_relative_error"] < 1e-4
    assert report["macs"]["after"] < (1 - ratio / 2) * report["macs"]["before"]
    pruned = result.model
    # The neck, the shared towers and their per-level BatchNorms all lost channels together.
    for before, after in ((model.neck.smooth3.conv, pruned.neck.smooth3.conv),
                          (model.head.cls_tower.convs[0], pruned.head.cls_tower.convs[0])):
        assert after.out_channels < before.out_channels
    tower = pruned.head.cls_tower
    assert {norm[0].num_features for norm in tower.norms} == {tower.convs[0].out_channels}
    assert pruned.head.cls_pred.out_channels == 3 and pruned.head.box_pred.out_channels == 4
    with torch.no_grad():
        detections = postprocess(pruned(x), (64, 64), {"score_threshold": 0.0, "max_detections": 5})
    assert [d.shape for d in detections] == [(5, 6), (5, 6)]
    loaded = load(save_model(pruned, tmp_path / "pruned")).eval()  # replays the "prune" transform
    with torch.no_grad():
        assert torch.equal(loaded(x), pruned(x))
