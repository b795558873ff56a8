"""`deepshrink search`: the files it writes, the saved model within budget, the plan replayed by
`deepshrink prune --config`, resuming from the saved state, and one-line errors for bad input."""

from __future__ import annotations

import json

import pytest

from deepshrink.cli.main import main
from deepshrink.metrics import macs
from deepshrink.models import load

ARGS = ["--model", "digits_cnn", "--data", "digits", "--no-protect-ends", "--ratios", "0,0.25,0.5,0.75",
        "--round-to", "4", "--generations", "1", "--population", "4", "--no-progress"]


def test_search_writes_plan_candidates_plot_and_model(tmp_path) -> None:
    out = tmp_path / "out"
    code = main(["search", *ARGS, "--target", "macs:0.5", "--finetune-epochs", "1", "--limit-batches", "2",
                 "--out", str(out)])
    assert code == 0
    assert {p.name for p in out.iterdir()} >= {"plan.json", "candidates.json", "pareto.png", "model.safetensors",
                                               "model.json", "metrics.json", "search_config.json", "search_state.json"}
    metrics = json.loads((out / "metrics.json").read_text())
    model = load(out)
    limit = metrics["budget"]["limit"]
    assert metrics["budget"]["metric"] == "macs" and limit == pytest.approx(0.5 * metrics["budget"]["baseline"])
    assert macs(model, (1, 8, 8))[0] == metrics["chosen"]["macs"] <= limit
    assert metrics["test"]["after"]["n"] > 0 and metrics["meets_target"]
    config = json.loads((out / "search_config.json").read_text())
    assert (config["generations"], config["population"], config["finetune"]["epochs"]) == (1, 4, 1)

    # plan.json holds PruneConfig fields: `deepshrink prune --config` rebuilds the same architecture.
    replay = tmp_path / "replay"
    assert main(["prune", "--model", "digits_cnn", "--config", str(out / "plan.json"), "--out", str(replay)]) == 0
    replayed = load(replay)
    assert {k: v.shape for k, v in replayed.state_dict().items()} == {k: v.shape for k, v in model.state_dict().items()}

    # The same command again resumes from the finished state: nothing is searched twice.
    before = json.loads((out / "search_state.json").read_text())
    assert main(["search", *ARGS, "--target", "macs:0.5", "--out", str(out)]) == 0
    again = json.loads((out / "metrics.json").read_text())
    assert again["plan"] == metrics["plan"]
    assert json.loads((out / "search_state.json").read_text())["cache"] == before["cache"]


@pytest.mark.parametrize("extra, message", [
    (["--target", "macs:0.01"], "no candidate meets the budget macs <= 0.01"),
    (["--target", "latency:2x", "--runtime", "ort-tensorrt"],
     "latency runtime 'ort-tensorrt' needs ONNX Runtime's TensorrtExecutionProvider"),
    (["--target", "speed:2x"], "budget: expected METRIC:FRACTION or METRIC:FACTORx"),
    (["--ratios", "0,a"], "--ratios '0,a': expected comma-separated fractions"),
    (["--target", "params:0.9", "--also", "macs:0.01"], "no candidate meets the limit macs <= "),
    (["--also", "latency:2x"], "limits: latency can only be the budget itself"),
])
def test_errors_are_one_line(tmp_path, capsys, monkeypatch, extra, message) -> None:
    from deepshrink.nas.search import config as config_module

    monkeypatch.setattr(config_module, "installed_providers", lambda: ["CPUExecutionProvider"])
    code = main(["search", *ARGS, *extra, "--out", str(tmp_path)])
    err = capsys.readouterr().err
    assert code == 2
    assert message in " ".join(err.split())
