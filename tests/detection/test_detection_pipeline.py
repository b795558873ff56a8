"""`deepshrink compress` on detection data: the recipe's steps train, prune, distil and quantise a
detector, every stage is scored by mAP (the int8 stage as deployed on ONNX Runtime), and what a
detection recipe cannot do yet is refused by name before any work."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from deepshrink.errors import ConfigError
from deepshrink.pipeline import compress

TRAIN = "{epochs: 1, batch_size: 2, optimizer: adamw, lr: 0.002, limit_batches: 2}"


def recipe(yolo_dir: Path, steps: str) -> str:
    return (f"model: {{name: 'det_fixtures:tiny_fcos', weights: null, options: {{neck_width: 16}}}}\ndata: yolo:{yolo_dir}\nimage_size: 64\n"
            f"seed: 0\nsteps:\n{steps}")


def test_detector_recipe_runs_prune_distill_quantize_export(yolo_dir, tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("DEEPSHRINK_CACHE", str(tmp_path / "cache"))
    path = tmp_path / "detector.yaml"
    path.write_text(recipe(yolo_dir, f"""\
  - train: {TRAIN}
  - prune: {{criterion: fpgm, ratio: 0.5, round_to: 4, protect_ends: false, finetune: {TRAIN}}}
  - distill: {{teachers: [{{name: "step:1"}}], train: {TRAIN}}}
  - quantize: {{method: ptq, bits: 8, calibration_size: 8, keep_float: [head.cls_pred, head.box_pred, head.ctr_pred]}}
  - export: {{formats: [onnx, onnx_int8]}}
"""))
    out = tmp_path / "run"
    report = compress(path, out=out)
    assert report["score"] == "map50"
    stages = {stage["name"]: stage for stage in report["stages"]}
    assert list(stages) == ["baseline", "1-train", "2-prune", "3-distill", "4-quantize"]
    for stage in stages.values():
        assert 0 <= stage["map50"] <= 100 and 0 <= stage["map50_95"] <= stage["map50"] and "top1" not in stage
        assert set(stage["latency_ms"]) == {"ort_b1"}
    assert stages["2-prune"]["macs"] < 0.75 * stages["1-train"]["macs"]
    assert "map50_fake_quant" in stages["4-quantize"] and stages["4-quantize"]["artifact"].endswith("model.int8.onnx")
    assert (out / "final" / "model.int8.onnx").is_file() and (out / "final" / "model.fp32.onnx").is_file()
    assert "mAP@0.5 % (Δ)" in (out / "report.md").read_text()
    assert json.loads((out / "report.json").read_text())["stages"][-1]["name"] == "4-quantize"


@pytest.mark.parametrize(("step", "message"), [
    ("  - search: {budget: {metric: macs, keep: 0.5}}", "detection data: the architecture search scores classifiers"),
    ("  - prune: {budget: {keep: 0.5}, sensitivity: {}}", "detection data: the sensitivity curves score top-1"),
    ("  - quantize: {method: qat, bits: 8}", "detection data: QAT trains with cross-entropy; use method: ptq"),
    ("  - export: {formats: [ncnn]}", "detection data: ncnn export is verified by top-1"),
    ("  - distill: {teachers: [{name: input}], losses: [kd, at]}", "losses: a detector distils by neck imitation"),
    ("  - distill: {teachers: [{name: input}], weights: auto}", "weights: auto (seed 001 eq. 7) is for classifiers"),
    ("  - distill: {teachers: [{name: input}, {name: input}]}", "a detector distils from one teacher, got 2"),
])
def test_what_detection_recipes_cannot_do_is_refused_before_any_work(yolo_dir, tmp_path, step, message) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(recipe(yolo_dir, step + "\n"))
    with pytest.raises(ConfigError, match=re.escape(message)) as caught:
        compress(path, out=tmp_path / "run")
    assert str(caught.value).startswith(str(path)) and not (tmp_path / "run").exists()
