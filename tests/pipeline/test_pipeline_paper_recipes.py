"""The example recipes: each validates, and seed 001's ResNet-32 recipe runs every step in smoke
mode on the real CIFAR-10 JPEG copy and checkpoints, through to ONNX and ncnn (skipped without
../shared)."""

from __future__ import annotations

from pathlib import Path

import pytest

from deepshrink.pipeline import compress, load_recipe

ROOT = Path(__file__).resolve().parents[2]
RECIPES = sorted((ROOT / "examples" / "recipes").glob("*.yaml"))


@pytest.mark.parametrize("path", RECIPES, ids=[p.stem for p in RECIPES])
def test_example_recipes_validate(path: Path) -> None:
    recipe = load_recipe(path)
    assert recipe.parsed_steps and recipe.parsed_steps[-1].kind == "export"


def test_paper_resnet32_recipe_runs_every_step_in_smoke_mode(shared_dir: Path, tmp_path: Path,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(ROOT)  # the recipe's paths are relative to the project root
    report = compress(ROOT / "examples/recipes/paper-resnet32-cifar10.yaml", out=tmp_path / "run", smoke=True)
    names = [s["name"] for s in report["stages"]]
    assert names == ["baseline", "1-prune", "2-distill", "3-quantize"]
    baseline, pruned = report["stages"][0], report["stages"][1]
    assert pruned["macs"] < 0.6 * baseline["macs"]  # FPGM 50 % of the filters
    allocation = report["steps"][1]["distill"]["allocation"]
    assert allocation is not None and abs(report["steps"][1]["distill"]["alpha"] + report["steps"][1]["distill"]["beta"] - 1) < 1e-6
    assert (tmp_path / "run" / "final" / "model.int8.onnx").is_file()
    ncnn = report["deploy"]["export"]["ncnn"]  # §4.2: the pruned, distilled float model on ncnn
    assert ncnn["max_abs_error_vs_torch"] < 1e-3 and ncnn["bytes"] < 0.6 * baseline["bytes"]
