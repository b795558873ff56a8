"""ResNet-20 with the shared CIFAR-10 JPEG baseline: the deployed int8 model against the
simulated one on real data (slow: run with -m slow; skipped without ../shared)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

import deepshrink
from deepshrink.data import BatchLoader, subset
from deepshrink.export import export_onnx, run_onnx
from deepshrink.metrics import evaluate
from deepshrink.metrics.evaluation import evaluate_onnx
from deepshrink.models import load_weights


@pytest.mark.slow
@pytest.mark.shared
def test_resnet20_w8a8_deployed_top1_matches_fake_quant(shared_dir, tmp_path):
    data = deepshrink.load_data(f"imagefolder:{shared_dir / 'datasets' / 'cifar10-jpeg.tar.gz'}")
    data = dataclasses.replace(data, test=subset(data.test, 2000, seed=0))  # stratified: the split is class-ordered
    model = deepshrink.create_model("resnet20")
    load_weights(model, shared_dir / "weights" / "cifar10-jpeg" / "resnet20.pth")
    result = deepshrink.quantize(model.eval(), data, config={"calibration_size": 256}, onnx_path=tmp_path / "r20.int8.onnx")
    fp32, fake = evaluate(model, data)["top1"], evaluate(result.model, data)["top1"]
    deployed = evaluate_onnx(result.onnx_path, data)["top1"]
    assert abs(deployed - fake) <= 0.2
    assert fp32 - fake <= 1.0
    x, _ = next(iter(BatchLoader(data.test, 500, train=False, mean=data.mean, std=data.std)))
    with torch.no_grad():
        agreement = (run_onnx(result.onnx_path, x).argmax(1) == result.model(x).argmax(1).numpy()).mean()
    assert agreement >= 0.99
    fp32_file = export_onnx(model, tmp_path / "r20.fp32.onnx")
    assert result.onnx_path.stat().st_size <= 0.27 * fp32_file.stat().st_size
    assert np.isfinite(result.report["logits_sqnr_db"])
