"""`deepshrink detect train|eval|profile` on a tiny generated set, and the detector profile with
and without NMS."""

from __future__ import annotations

import json

import pytest
import torch
from click.testing import CliRunner

from deepshrink.cli.detect import detect
from deepshrink.detection import profile_detector
from deepshrink.errors import DataError


def test_train_then_eval_then_profile(yolo_dir, tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("DEEPSHRINK_CACHE", str(tmp_path / "cache"))
    runner = CliRunner()
    out = tmp_path / "run"
    result = runner.invoke(detect, ["train", "--model", "fcos_mobilenet_v2", "--data", f"yolo:{yolo_dir}",
                                    "--image-size", "64", "--width-mult", "0.25", "--epochs", "1", "--batch-size", "2",
                                    "--limit-batches", "2", "--out", str(out)], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    metrics = json.loads((out / "metrics.json").read_text())
    assert set(metrics["test"]) >= {"map50", "map50_95", "per_class"} and "val_map50" in metrics["history"][0]
    assert "AP@0.5" in result.output

    report = tmp_path / "eval.json"
    result = runner.invoke(detect, ["eval", "--model", str(out / "model"), "--data", f"yolo:{yolo_dir}", "--image-size",
                                    "64", "--split", "val", "--json", str(report)], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert json.loads(report.read_text())["images"] == 2

    profile = tmp_path / "profile.json"
    result = runner.invoke(detect, ["profile", "--model", str(out / "model"), "--input-size", "3x64x64",
                                    "--runtimes", "eager", "--json", str(profile)], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert set(json.loads(profile.read_text())["latency_ms"]) == {"eager_b1", "eager_b1_nms"}


def test_bad_data_spec_is_a_data_error(tmp_path) -> None:
    result = CliRunner().invoke(detect, ["eval", "--model", "fcos_resnet", "--data", f"yolo:{tmp_path / 'none'}"])
    assert isinstance(result.exception, DataError) and "not found" in str(result.exception)


def test_profile_reports_macs_at_the_input_size_and_latency_with_nms(tiny_detector) -> None:
    model = tiny_detector()
    small = profile_detector(model, (3, 64, 64), runtimes=("ort",), images=torch.randn(1, 3, 64, 64))
    large = profile_detector(model, (3, 128, 128), runtimes=())
    assert large.macs == pytest.approx(4 * small.macs, rel=0.01)  # convolutions scale with the pixels
    assert set(small.latency_ms) == {"ort_b1", "ort_b1_nms"}
    assert small.latency_ms["ort_b1_nms"] > 0 and small.input_size == (3, 64, 64)


def test_foundation_commands_route_detection_data_and_detectors(yolo_dir, tmp_path, monkeypatch, capsys) -> None:
    from deepshrink.cli.main import main

    monkeypatch.setenv("DEEPSHRINK_CACHE", str(tmp_path / "cache"))
    out = tmp_path / "run"
    data = f"yolo:{yolo_dir}"
    assert main(["train", "--model", "fcos_mobilenet_v2", "--data", data, "--epochs", "1", "--batch-size", "2",
                 "--limit-batches", "2", "--out", str(out)]) == 0, capsys.readouterr()
    assert "AP@0.5" in capsys.readouterr().out and (out / "model").is_dir()
    report = tmp_path / "eval.json"
    assert main(["eval", "--model", str(out / "model"), "--data", data, "--split", "val", "--json", str(report)]) == 0
    assert set(json.loads(report.read_text())) >= {"map50", "map50_95", "per_class"}
    profile = tmp_path / "profile.json"
    assert main(["profile", "--model", str(out / "model"), "--input-size", "3x64x64", "--batch-sizes", "1",
                 "--runtimes", "eager", "--json", str(profile)]) == 0
    assert set(json.loads(profile.read_text())["latency_ms"]) == {"eager_b1", "eager_b1_nms"}
    capsys.readouterr()
    assert main(["train", "--model", "fcos_resnet", "--data", data, "--schedule", "step", "--out", str(out)]) == 2
    assert "--schedule: detectors train with warm-up + cosine" in capsys.readouterr().err
    assert main(["profile", "--model", "fcos_resnet", "--ort-nodes", "3"]) == 2
    assert "--num-classes and --ort-nodes apply to classifiers" in capsys.readouterr().err
