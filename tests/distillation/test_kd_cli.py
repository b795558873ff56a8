"""`deepshrink distill`, `kd-weights` and `kd-sweep` end to end on the embedded digits data."""

from __future__ import annotations

import json

import pytest

from deepshrink.cli.main import main

TRAIN = ["--epochs", "1", "--batch-size", "64", "--optimizer", "adamw", "--lr", "0.003", "--no-augment"]


@pytest.fixture(scope="module")
def teacher_dir(teacher, tmp_path_factory):
    from deepshrink.models import save_model

    return str(save_model(teacher, tmp_path_factory.mktemp("kd") / "teacher"))


def test_distill_command_writes_model_config_and_metrics(teacher_dir, tmp_path, capsys):
    from deepshrink.models import load

    out = tmp_path / "run"
    code = main(["distill", "--student", "digits_cnn", "--teacher", teacher_dir, "--data", "digits",
                 "--loss", "kd,at", "--kd-weights", "0.3,0.7", "--temperature", "2", *TRAIN, "--out", str(out)])
    assert code == 0, capsys.readouterr()
    config = json.loads((out / "distill_config.json").read_text())
    assert [spec["name"] for spec in config["losses"]] == ["kd", "at"]
    assert config["weights"] == {"alpha": 0.3, "beta": 0.7} and config["temperature"] == 2.0
    metrics = json.loads((out / "metrics.json").read_text())
    assert 0 <= metrics["test"]["top1"] <= 100 and len(metrics["history"]) == 1
    assert load(out / "model").classifier.out_features == 10
    assert (out / "train" / "checkpoint.pt").is_file()


def test_distill_command_reads_a_recipe_and_flags_override_it(teacher_dir, tmp_path, capsys):
    recipe = tmp_path / "kd.yaml"
    recipe.write_text("losses: [kd, {name: sp, weight: 100}]\ntemperature: 3\ntrain: {epochs: 5, batch_size: 64}\n")
    out = tmp_path / "run"
    code = main(["distill", "--student", "digits_cnn", "--teacher", teacher_dir, "--data", "digits",
                 "--recipe", str(recipe), *TRAIN, "--out", str(out)])
    assert code == 0, capsys.readouterr()
    config = json.loads((out / "distill_config.json").read_text())
    assert config["losses"][1] == {"name": "sp", "weight": 100.0, "student": [], "teacher": [], "options": {}}
    assert config["temperature"] == 3.0 and config["train"]["epochs"] == 1  # --epochs wins over the recipe


def test_distill_command_trains_in_two_stages_with_hint_epochs(teacher_dir, tmp_path):
    out = tmp_path / "out"
    code = main(["distill", "--student", "digits_cnn", "--teacher", teacher_dir, "--data", "digits",
                 "--loss", "kd,fitnet", "--hint-epochs", "1", "--epochs", "1", "--limit-batches", "3",
                 "--out", str(out)])
    assert code == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert [h.get("stage") for h in metrics["history"]] == ["hint", None]
    assert metrics["config"]["hint_epochs"] == 1
    assert (out / "train" / "hint" / "checkpoint.pt").is_file()


def test_kd_weights_command_prints_the_measurement(teacher_dir, tmp_path, capsys):
    out = tmp_path / "alloc.json"
    code = main(["kd-weights", "--teacher", teacher_dir, "--second", "digits_cnn", "--data", "digits", *TRAIN,
                 "--out", str(out)])
    printed = capsys.readouterr().out
    assert code == 0, printed
    for label in ("I_A (points)", "I_B (points)", "beta, teacher term", "alpha, label term", "rule"):
        assert label in printed
    record = json.loads(out.read_text())["allocation"]
    assert record["weights"]["alpha"] + record["weights"]["beta"] == pytest.approx(1.0)
    assert record["improvement_teacher"] == pytest.approx(record["teacher_top1"] - record["baseline_top1"])


def test_kd_sweep_command_writes_points_and_plot(teacher_dir, tmp_path, capsys):
    out = tmp_path / "sweep"
    code = main(["kd-sweep", "--student", "digits_cnn", "--teacher", teacher_dir, "--data", "digits",
                 "--alphas", "1.0,0.5", *TRAIN, "--out", str(out)])
    assert code == 0, capsys.readouterr()
    points = json.loads((out / "sweep.json").read_text())["points"]
    assert [(p["alpha"], p["beta"]) for p in points] == [(1.0, 0.0), (0.5, 0.5)]
    assert (out / "sweep.png").read_bytes()[:4] == b"\x89PNG"


@pytest.mark.parametrize(
    "args, message",
    [
        (["--loss", "kd,atx"], "unknown distillation loss 'atx' (did you mean: at?)"),
        (["--temperature", "0"], "temperature: Input should be greater than 0, got 0"),
        (["--kd-weights", "0.5"], "--kd-weights '0.5': expected 'auto' or two numbers alpha,beta"),
        (["--teacher-mix", "0,0"], "teacher_weights: [0.0, 0.0] sum to 0.0; they must sum to a positive number"),
        (["--teacher-weights", "a.pth", "--teacher-weights", "b.pth"],
         "--teacher-weights given 2 times for 1 --teacher models"),
        (["--cache-teacher-logits"], "cache_teacher_logits: needs un-augmented passes; set train.augment to false"),
        (["--loss", "at", "--cache-teacher-logits", "--no-augment"],
         "only logits are cached, but 'at' needs teacher features"),
    ],
)
def test_bad_input_is_one_line_naming_the_fault(args, message, tmp_path, capsys):
    code = main(["distill", "--student", "digits_cnn", "--teacher", "digits_cnn", "--data", "digits", *args,
                 "--out", str(tmp_path / "run")])
    err = " ".join(capsys.readouterr().err.split())
    assert code == 2 and message in err
