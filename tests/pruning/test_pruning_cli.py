"""`deepshrink prune`: files written, metrics before/after, reload from the directory, the
resolved config next to the output, and one-line errors for bad input."""

from __future__ import annotations

import json

import pytest
import torch

from deepshrink.cli.main import main
from deepshrink.models import create_model, load, save_model


def test_prune_writes_model_metrics_and_config(tmp_path) -> None:
    weights = tmp_path / "in"
    save_model(create_model("resnet20"), weights)
    out = tmp_path / "out"
    code = main(["prune", "--model", "resnet20", "--weights", str(weights / "model.safetensors"), "--criterion", "fpgm",
                 "--ratio", "0.5", "--no-protect-ends", "--onnx", "--out", str(out)])
    assert code == 0
    assert {p.name for p in out.iterdir()} >= {"model.safetensors", "model.json", "metrics.json", "prune_config.json",
                                               "prune_report.json", "model.onnx"}
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["macs"]["after"] / metrics["macs"]["before"] < 0.26
    assert metrics["params"]["after"] < metrics["params"]["before"]
    config = json.loads((out / "prune_config.json").read_text())
    assert (config["criterion"], config["ratio"], config["protect_ends"]) == ("fpgm", 0.5, False)
    model = load(out)
    assert model.conv1.out_channels == 8
    original = create_model("resnet20")
    from deepshrink.models import load_weights

    load_weights(original, weights / "model.safetensors")
    assert torch.equal(model.conv1.weight, original.conv1.weight[model.deepshrink_spec.transforms[0]["plan"]
                                                                  ["layers"]["conv1"]["out"]])


def test_prune_with_data_finetunes_and_reports_accuracy(tmp_path) -> None:
    out = tmp_path / "out"
    code = main(["prune", "--model", "digits_cnn", "--criterion", "taylor", "--ratio", "0.5", "--round-to", "4",
                 "--no-protect-ends", "--data", "digits", "--finetune-epochs", "1", "--limit-batches", "2",
                 "--out", str(out)])
    assert code == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert set(metrics["test"]) == {"before", "after"} and metrics["test"]["after"]["n"] > 0


def test_budget_flag(tmp_path) -> None:
    code = main(["prune", "--model", "resnet20", "--macs-budget", "0.6", "--round-to", "1", "--out", str(tmp_path)])
    assert code == 0
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert 0.55 <= metrics["macs"]["after"] / metrics["macs"]["before"] <= 0.6


def test_sensitivity_curves_set_the_ratios_within_the_budget(tmp_path) -> None:
    out = tmp_path / "out"
    code = main(["prune", "--model", "digits_cnn", "--data", "digits", "--sensitivity", "--macs-budget", "0.6",
                 "--round-to", "4", "--no-protect-ends", "--sensitivity-batches", "1", "--limit-batches", "1",
                 "--out", str(out)])
    assert code == 0
    curves = json.loads((out / "sensitivity.json").read_text())
    assert curves["ratios"] == [0.25, 0.5, 0.75] and curves["curves"]
    assert (out / "sensitivity.png").read_bytes()[:4] == b"\x89PNG"
    config = json.loads((out / "prune_config.json").read_text())
    assert set(config["ratios"]) == set(curves["curves"]) and config["budget"] is None
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["macs"]["after"] / metrics["macs"]["before"] <= 0.6


def test_errors_are_one_line(tmp_path, capsys) -> None:
    cases = [
        (["--ratio", "1.5"], "PruneConfig field 'ratio': Input should be less than 1"),
        (["--criterion", "fpgmm"], "unknown importance criterion 'fpgmm' (did you mean: fpgm?)"),
        (["--protect", "layer9"], "protected layers: name 'layer9' matches no layer"),
        (["--finetune-epochs", "2"], "--finetune-epochs and --steps need --data"),
        (["--criterion", "hrank"], "criterion 'hrank' needs calibration data"),
        (["--macs-budget", "0.5", "--params-budget", "0.5"], "at most one of --macs-budget and --params-budget"),
        (["--sensitivity", "--macs-budget", "0.5"], "--sensitivity needs --data"),
        (["--sensitivity", "--data", "digits"], "--sensitivity needs exactly one of --macs-budget/--params-budget"),
        (["--sensitivity", "--data", "digits", "--max-drop", "1", "--ratio", "0.3"], "--ratio conflicts with --sensitivity"),
        (["--max-drop", "1"], "--max-drop needs --sensitivity"),
        (["--round-to", "sixteen"], "--round-to 'sixteen': expected a positive integer or 'auto'"),
        (["--model", "digits_cnn", "--data", "digits", "--sensitivity", "--max-drop", "1", "--limit-batches", "1"],
         "sensitivity: the model has no prunable group to measure"),
    ]
    for args, message in cases:
        code = main(["prune", "--model", "resnet20", *args, "--out", str(tmp_path / "x")])
        err = capsys.readouterr().err
        assert code == 2 and message in " ".join(err.split()), (args, err)


@pytest.mark.parametrize("flag, distilled", [([], True), (["--no-distill"], False)])
def test_finetuning_distills_from_the_unpruned_model_by_default(tmp_path, monkeypatch, flag, distilled) -> None:
    import deepshrink.distillation as distillation

    calls = []
    real = distillation.distill

    def spy(student, teacher, data, config, **kwargs):
        calls.append((sum(p.numel() for p in student.parameters()), sum(p.numel() for p in teacher.parameters()),
                      config.weights.alpha, config.temperature))
        return real(student, teacher, data, config, **kwargs)

    monkeypatch.setattr(distillation, "distill", spy)
    code = main(["prune", "--model", "digits_cnn", "--ratio", "0.5", "--round-to", "4", "--no-protect-ends", "--data", "digits",
                 "--finetune-epochs", "1", "--limit-batches", "2", *flag, "--out", str(tmp_path)])
    assert code == 0
    if distilled:
        (student, teacher, alpha, temperature), = calls
        assert student < teacher and alpha == 0.1 and temperature == 4.0  # the teacher is the unpruned model
    else:
        assert calls == []


def test_drop_blocks_removes_whole_branches_after_the_channels(tmp_path, rgb_imagefolder) -> None:
    out = tmp_path / "out"
    data = rgb_imagefolder()
    code = main(["prune", "--model", "resnet20", "--data", data, "--ratio", "0.5", "--drop-blocks", "2",
                 "--drop-within", "^layer1\\.", "--finetune-epochs", "1", "--batch-size", "8", "--limit-batches", "2", "--out", str(out)])
    assert code == 0
    metrics = json.loads((out / "metrics.json").read_text())
    report = json.loads((out / "depth_report.json").read_text())
    assert len(metrics["depth"]["dropped"]) == 2 and all(n.startswith("layer1.") for n in metrics["depth"]["dropped"])
    channels_only = json.loads((out / "prune_report.json").read_text())["macs"]["after"]
    assert metrics["macs"]["after"] < channels_only and report["verified_rel_error"] <= 1e-4
    model = load(out)
    weighted = [name for name, m in model.named_modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.BatchNorm2d))]
    assert not [n for n in weighted if n.startswith(tuple(f"{d}." for d in metrics["depth"]["dropped"]))]


@pytest.mark.parametrize("args, message", [
    (["--drop-blocks", "1"], "--drop-blocks needs --data"),
    (["--drop-within", "layer1"], "--drop-within needs --drop-blocks"),
    (["--drop-by", "latency"], "--drop-by needs --drop-blocks"),
    (["--drop-blocks", "1", "--data", "digits", "--steps", "2"], "cannot be combined with --steps"),
    (["--drop-blocks", "-1", "--data", "digits"], "DepthOptions field 'count'"),
    (["--drop-blocks", "1", "--data", "RGB", "--drop-within", "stage9", "--limit-batches", "1"],
     "within='stage9' matches no residual branch"),
])
def test_drop_blocks_errors_are_one_line(tmp_path, capsys, rgb_imagefolder, args, message) -> None:
    args = [rgb_imagefolder() if a == "RGB" else a for a in args]
    code = main(["prune", "--model", "resnet20", *args, "--out", str(tmp_path / "x")])
    err = capsys.readouterr().err
    assert code == 2 and message in " ".join(err.split()), err
