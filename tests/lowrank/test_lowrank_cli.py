"""`deepshrink decompose` end to end on the embedded digits data and a self-contained model."""

from __future__ import annotations

import json

import torch

from deepshrink.cli.main import main
from deepshrink.models import load


def test_decompose_with_sensitivity_finetuning_and_onnx(tmp_path, capsys) -> None:
    out = tmp_path / "run"
    code = main(["decompose", "--model", "digits_cnn", "--method", "tucker", "--ratio", "2", "--no-exclude",
                 "--allocation", "sensitivity", "--calibration-images", "64", "--data", "digits",
                 "--finetune-epochs", "1", "--batch-size", "64", "--limit-batches", "2", "--mimic", "1", "--onnx",
                 "--out", str(out)])
    printed = capsys.readouterr()
    assert code == 0, printed
    assert "top-1 finetuned" in printed.out and "layers decomposed" in printed.out
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["params"]["before"] / metrics["params"]["after"] >= 2
    assert set(metrics["test"]) == {"before", "decomposed", "reconstructed", "finetuned"}
    refits = metrics["reconstruction"]
    assert refits and all(r["error_after"] <= r["error_before"] for r in refits.values())
    config = json.loads((out / "decompose_config.json").read_text())
    assert config["rule"] == {"ratio": 2.0, "budget": "params", "allocation": "sensitivity"} and config["exclude"] == []
    recipe = json.loads((out / "finetune_config.json").read_text())
    assert [(loss["name"], loss["weight"]) for loss in recipe["losses"]] == [("kd", None), ("mimic", 1.0)]
    model = load(out)
    assert [e["name"] for e in model.deepshrink_spec.transforms[-1]["plan"]["layers"]] == [e["name"] for e in metrics["layers"]]
    assert (out / "model.onnx").is_file() and (out / "train" / "checkpoint.pt").is_file()


def test_decompose_with_explicit_ranks_and_no_data(tmp_path, capsys) -> None:
    out = tmp_path / "run"
    ranks = '{"body.0": 3, "body.2": [4, 5], "hidden": 6}'
    code = main(["decompose", "--model", "lowrank_models:tiny_cnn", "--method", "tucker", "--ranks", ranks,
                 "--out", str(out)])
    assert code == 0, capsys.readouterr()
    plan = load(out).deepshrink_spec.transforms[-1]["plan"]["layers"]
    assert [(e["name"], e["ranks"]) for e in plan] == [("body.0", [3, 3]), ("body.2", [4, 5]), ("hidden", [6])]
    assert isinstance(load(out).body[2], torch.nn.Sequential)


def test_decompose_errors_are_one_line_naming_the_fault(tmp_path, capsys) -> None:
    base = ["decompose", "--model", "lowrank_models:tiny_cnn", "--out", str(tmp_path / "x")]
    assert main([*base, "--ratio", "2", "--exclude", "stem", "--no-exclude"]) == 2
    assert "give --exclude or --no-exclude, not both" in capsys.readouterr().err
    assert main([*base, "--ranks", "[1, 2]"]) == 2
    assert "--ranks '[1, 2]': expected 'vbmf' or a mapping" in capsys.readouterr().err
    assert main([*base, "--ranks", '{"body.2": 99}']) == 2
    assert "layer 'body.2' (Conv2d 16->16, 3x5): tucker rank [99, 99] is out of range" in capsys.readouterr().err
    assert main([*base, "--ratio", "2", "--allocation", "sensitivity"]) == 2
    assert "need --data" in capsys.readouterr().err
    assert main([*base, "--ratio", "2", "--reconstruct-images", "-1"]) == 2
    assert "--reconstruct-images must be >= 0" in capsys.readouterr().err
    assert main([*base, "--ratio", "2", "--mimic", "-0.5"]) == 2
    assert "--mimic must be >= 0 (0 turns feature mimicking off), got -0.5" in capsys.readouterr().err
