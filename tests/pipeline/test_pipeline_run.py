"""Running recipes: every step on digits, the report files, resume after completed steps, and a
kill -9 during a step followed by a re-run that reproduces the uninterrupted run's report."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from deepshrink.pipeline import compress

TRAIN = "{epochs: 2, batch_size: 64, optimizer: adamw, lr: 0.01, limit_batches: 6, augment: false}"
RECIPE = f"""\
name: tiny
model: {{name: digits_cnn, weights: null}}
data: digits
seed: 0
steps:
  - train: {TRAIN}
  - prune: {{criterion: fpgm, ratio: 0.5, round_to: 4, protect_ends: false, finetune: {TRAIN}}}
  - distill: {{teachers: [{{name: "step:1"}}], weights: {{alpha: 0.3, beta: 0.7}}, train: {TRAIN}}}
  - quantize: {{method: ptq, bits: 8, calibration_size: 128}}
  - export: {{}}
"""
COMPARED = ("name", "top1", "params", "macs", "bytes")


def stable(report: dict) -> list[dict]:
    """What must match between runs (latency is measured, so it varies)."""
    return [{k: stage[k] for k in COMPARED} for stage in report["stages"]]


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    root = tmp_path_factory.mktemp("reference")
    recipe = root / "tiny.yaml"
    recipe.write_text(RECIPE)
    return recipe, compress(recipe, out=root / "run")


def test_every_step_runs_and_writes_the_report(reference: tuple[Path, dict]) -> None:
    recipe, report = reference
    run = recipe.parent / "run"
    names = [s["name"] for s in report["stages"]]
    assert names == ["baseline", "1-train", "2-prune", "3-distill", "4-quantize"]
    trained, pruned, final = report["stages"][1], report["stages"][2], report["stages"][-1]
    assert pruned["params"] < 0.45 * trained["params"] and pruned["macs"] < 0.45 * trained["macs"]
    assert final["bytes"] < pruned["bytes"] / 2  # int8 ONNX file against the FP32 weights
    assert final["top1"] > 25 and abs(final["top1"] - final["top1_fake_quant"]) <= 2.0
    for name in ("report.json", "report.md", "report.html", "recipe.resolved.json", "final/model.fp32.onnx",
                 "final/model.int8.onnx", "final/model/model.safetensors", "final/model/model.json",
                 "plot_size.png", "plot_macs_per_layer.png", "plot_channels.png", "plot_training.png"):
        assert (run / name).is_file(), name
    assert "| 2-prune |" in (run / "report.md").read_text()


def test_final_model_reloads_from_its_plan(reference: tuple[Path, dict]) -> None:
    from deepshrink.models import load

    recipe, report = reference
    model = load(recipe.parent / "run" / "final" / "model")
    assert sum(p.numel() for p in model.parameters()) == report["stages"][-1]["params"]


def test_rerun_resumes_after_completed_steps(reference: tuple[Path, dict]) -> None:
    recipe, report = reference
    started = time.perf_counter()
    again = compress(recipe, out=recipe.parent / "run")
    assert stable(again) == stable(report)
    assert [s["seconds"] for s in again["steps"]] == [s["seconds"] for s in report["steps"]]  # nothing re-ran
    assert time.perf_counter() - started < 60


def test_from_step_reruns_that_step_and_later(reference: tuple[Path, dict]) -> None:
    recipe, report = reference
    rerun = compress(recipe, out=recipe.parent / "run", from_step="quantize")
    assert [s["seconds"] for s in rerun["steps"][:3]] == [s["seconds"] for s in report["steps"][:3]]
    assert stable(rerun) == stable(report)


def test_kill_during_a_step_then_rerun_matches_uninterrupted(reference: tuple[Path, dict], tmp_path: Path) -> None:
    recipe, report = reference
    out = tmp_path / "killed"
    # One thread, as in this test process, so float sums (and so calibration) match bit for bit.
    launcher = "import sys, torch; torch.set_num_threads(1); from deepshrink.cli.main import main; sys.exit(main())"
    command = [sys.executable, "-c", launcher, "compress", str(recipe), "--out", str(out)]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    # Kill -9 once the prune step's fine-tuning has written its first epoch checkpoint.
    checkpoint = out / "steps" / "02-prune" / "train-0" / "checkpoint.pt"
    deadline = time.monotonic() + 300
    while not checkpoint.exists() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert process.poll() is None, "the run finished before it could be killed"
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    state = json.loads((out / "state.json").read_text())
    assert [s["kind"] for s in state["steps"]] == ["train"]
    resumed = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    final = json.loads((out / "report.json").read_text())
    assert stable(final) == stable(report)


def test_decompose_search_and_evaluate_steps_run_in_smoke_mode(tmp_path: Path) -> None:
    recipe = tmp_path / "more.yaml"
    recipe.write_text(f"""\
model: {{name: digits_cnn}}
data: digits
steps:
  - train: {TRAIN}
  - decompose: {{method: tucker, ratio: 1.5, exclude: [], finetune: {TRAIN}}}
  - search: {{budget: {{metric: macs, keep: 0.7}}, protect_ends: false, round_to: 4}}
  - prune: {{budget: {{keep: 0.8}}, sensitivity: {{ratios: [0.5]}}, protect_ends: false, round_to: 4}}
  - evaluate: {{split: val}}
  - distill: {{teachers: [{{name: input}}], losses: [kd, fitnet], hint_epochs: 3, train: {TRAIN}}}
""")
    report = compress(recipe, out=tmp_path / "run", smoke=True)
    assert report["smoke"] is True
    trained, decomposed, searched, pruned = (report["stages"][i] for i in (1, 2, 3, 4))
    assert decomposed["params"] < trained["params"]
    assert searched["macs"] <= 0.7 * decomposed["macs"] * 1.02
    assert pruned["macs"] <= 0.8 * searched["macs"]  # per-group ratios from the measured curves
    curves = json.loads((tmp_path / "run" / "steps" / "04-prune" / "sensitivity.json").read_text())
    assert curves["ratios"] == [0.5] and curves["curves"]
    report_md = (tmp_path / "run" / "report.md").read_text()  # the steps' own plots follow the report's
    assert "(steps/04-prune/sensitivity.png)" in report_md and "(steps/03-search/search/pareto.png)" in report_md
    assert report_md.count("data:image/png") == 0 and (tmp_path / "run" / "report.html").read_text().count(
        "data:image/png;base64") >= 2
    assert "val" in report["steps"][4]["evaluate"]
    distilled = next(stage for stage in report["stages"] if stage["name"] == "6-distill")
    assert [h.get("stage") for h in distilled["history"]] == ["hint", None]  # smoke: one epoch per stage


def test_prune_step_drops_residual_branches_after_the_channels_and_the_result_quantises(tmp_path: Path,
                                                                                        rgb_imagefolder) -> None:
    data = rgb_imagefolder(per_class=16)
    recipe = tmp_path / "depth.yaml"
    recipe.write_text(f"""\
model: {{name: resnet20}}
data: {data}
steps:
  - prune: {{ratio: 0.5, depth: {{count: 2, within: '^layer1\\.', rank_by: latency, latency_batch: 1}}, finetune: {{epochs: 1, batch_size: 8}}}}
  - quantize: {{method: ptq, bits: 8, calibration_size: 16}}
""")
    report = compress(recipe, out=tmp_path / "run", smoke=True)
    dropped = report["steps"][0]["depth"]["dropped"]
    assert len(dropped) == 2 and all(name.startswith("layer1.") for name in dropped)
    depth = json.loads((tmp_path / "run" / "steps" / "01-prune" / "depth.json").read_text())
    assert depth["dropped"] == dropped and depth["verified_rel_error"] <= 1e-4
    assert depth["rank_by"] == "latency" and set(depth["saved_ms"]) == {n for n in depth["lost_energy"] if n.startswith("layer1.")}
    assert report["stages"][1]["macs"] < report["stages"][0]["macs"] / 2  # halved channels, then two blocks less
    assert report["stages"][2]["artifact"].endswith("model.int8.onnx")


def test_quantize_step_runs_a_progressive_ladder_and_plots_every_stage(tmp_path: Path) -> None:
    recipe = tmp_path / "ladder.yaml"
    recipe.write_text(f"""\
model: {{name: digits_cnn, weights: null}}
data: digits
steps:
  - train: {TRAIN}
  - quantize: {{method: qat, bits: 2, weight: lsq_midrise, progressive: ["4:1"], calibration_size: 64, train: {TRAIN}}}
""")
    report = compress(recipe, out=tmp_path / "run")
    step = tmp_path / "run" / "steps" / "02-quantize"
    summary = json.loads((step / "quantize.json").read_text())
    assert [(s["bits"], s["weight"], len(s["qat_history"])) for s in summary["progressive"]] == [(4, "lsq", 1)]
    assert summary["weight"] == "lsq_midrise" and (step / "train" / "stage1-w4" / "checkpoint.pt").is_file()
    assert len(report["stages"][2]["history"]) == 1 + 2  # the 4-bit stage's epoch, then the 2-bit run's two
