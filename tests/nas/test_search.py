"""Per-layer pruning search under a MACs budget on a briefly trained ResNet-20 (16x16 inputs, a tiny
learnable 4-class set): the budget holds, the seed decides everything, an interrupted search resumes
to the same result, the plan replays through `prune`, and unreachable budgets say what is reachable."""

from __future__ import annotations

import json

import pytest
import torch

from deepshrink.data import DataBundle, ImageSet
from deepshrink.errors import BudgetError, ConfigError
from deepshrink.metrics import macs
from deepshrink.models import create_model
from deepshrink.nas.search import SearchConfig, search
from deepshrink.nas.search import candidates as candidates_module
from deepshrink.pruning import PruneConfig, prune
from deepshrink.training import train




def _images(n: int, generator: torch.Generator) -> ImageSet:
    """Class k brightens channel k % 3 (more for k >= 3) over noise: learnable in a few steps."""
    labels = torch.arange(n) % 4
    images = torch.randint(0, 60, (n, 3, 16, 16), generator=generator).float()
    for k in range(4):
        images[labels == k, k % 3] += 120 + 60 * (k // 3)
    return ImageSet(images.clamp(0, 255).to(torch.uint8), labels.to(torch.int64))


@pytest.fixture(scope="module")
def data() -> DataBundle:
    gen = torch.Generator().manual_seed(0)
    train_set, val, test = (_images(n, gen) for n in (128, 64, 64))
    return DataBundle(train=train_set, val=val, test=test, classes=("a", "b", "c", "d"), num_classes=4,
                      input_size=(3, 16, 16), mean=(0.3, 0.3, 0.3), std=(0.25, 0.25, 0.25), name="tiny")


@pytest.fixture(scope="module")
def model(data) -> torch.nn.Module:
    torch.manual_seed(0)
    net = create_model("resnet20", num_classes=4, input_size=(3, 16, 16))
    return train(net, data, {"epochs": 2, "batch_size": 32, "lr": 0.05, "progress": False}).model


CONFIG = {"budget": "macs:0.5", "ratios": (0.0, 0.25, 0.5, 0.75), "round_to": 4, "population": 6,
          "generations": 3, "progress": False,
          "proxy": {"batch_size": 32, "calibration_batches": 2, "val_batches": 2}}


@pytest.fixture(scope="module")
def result(model, data, tmp_path_factory):
    return search(model, data, CONFIG, out_dir=tmp_path_factory.mktemp("search"))


def test_search_respects_the_macs_budget_and_beats_uniform(model, data, result) -> None:
    base = result.unpruned["macs"]
    limit = 0.5 * base
    assert result.budget == {"metric": "macs", "keep": 0.5, "baseline": base, "limit": limit, "limits": {}}
    assert result.chosen["feasible"] and result.chosen["macs"] <= limit
    # An independent count (PyTorch's flop counter) on the model handed back agrees.
    assert macs(result.model, (3, 16, 16))[0] == result.chosen["macs"] <= limit
    for record in result.candidates:
        assert record["feasible"] == (record["macs"] <= limit)
    # The least-pruned uniform ratio within budget seeds the population, so the search can only win.
    for ratio in CONFIG["ratios"]:
        uniform = prune(model, (data.train.images[:2].float(),), ratio=ratio, round_to=4, verify=False)
        if uniform.report["macs"]["after"] <= limit:
            break
    seeded = next(c for c in result.candidates
                  if c["macs"] == uniform.report["macs"]["after"] and len(set(c["ratios"].values())) == 1)
    assert result.chosen["top1"] >= seeded["top1"]
    assert len(result.history) == CONFIG["generations"] + 1
    front = result.pareto
    assert all(a["macs"] < b["macs"] and a["top1"] < b["top1"] for a, b in zip(front, front[1:]))
    for record in result.candidates:  # every candidate is matched or beaten by a point of the front
        assert any(f["macs"] <= record["macs"] and f["top1"] >= record["top1"] for f in front)


def test_same_seed_same_search_other_seed_other_search(model, data, result) -> None:
    again = search(model, data, CONFIG)
    assert again.plan == result.plan
    assert again.candidates == result.candidates
    other = search(model, data, dict(CONFIG, seed=1))
    assert {c["key"] for c in other.candidates} != {c["key"] for c in result.candidates}


def test_resume_after_interruption_gives_the_uninterrupted_result(model, data, result, tmp_path, monkeypatch) -> None:
    class Interrupted(Exception):
        pass

    def stop_after_first(state) -> None:
        if state.generation == 1:
            raise Interrupted

    with pytest.raises(Interrupted):
        search(model, data, CONFIG, out_dir=tmp_path, on_generation=stop_after_first)
    saved = json.loads((tmp_path / "search_state.json").read_text())
    assert saved["generation"] == 1

    scored = []
    real_score = candidates_module.score
    monkeypatch.setattr(candidates_module, "score", lambda *a: scored.append(1) or real_score(*a))
    resumed = search(model, data, CONFIG, out_dir=tmp_path)
    assert resumed.plan == result.plan
    assert resumed.candidates == result.candidates
    assert resumed.history == result.history
    # Only the generations after the interruption were evaluated again.
    assert len(scored) == sum(c["generation"] >= 2 for c in result.candidates)


def test_resume_refuses_a_state_from_other_options(model, data, tmp_path) -> None:
    search(model, data, dict(CONFIG, generations=0), out_dir=tmp_path)
    differing = r"search_state.json: written by a search with different options \(config.round_to, model.genes\)"
    with pytest.raises(ConfigError, match=differing):
        search(model, data, dict(CONFIG, generations=0, round_to=8), out_dir=tmp_path)


def test_plan_round_trips_into_prune(model, data, result) -> None:
    plan_file = json.loads((result.out_dir / "plan.json").read_text())
    config = PruneConfig.model_validate(plan_file)
    assert dict(config.ratios) == result.plan and config.round_to == 4
    replayed = prune(model, (data.train.images[:2].float(),), config=PruneConfig(ratios=result.plan, ratio=0.0,
                                                                                 round_to=4))
    assert replayed.report["macs"]["after"] == result.chosen["macs"]
    ours, theirs = result.model.state_dict(), replayed.model.state_dict()
    assert ours.keys() == theirs.keys()
    for name, tensor in theirs.items():
        assert ours[name].shape == tensor.shape, name
        if not name.endswith(("running_mean", "running_var", "num_batches_tracked")):  # BN is recalibrated
            assert torch.equal(ours[name], tensor), name
    assert result.model.deepshrink_spec.transforms[-1]["kind"] == "prune"


def test_outputs_are_written(result) -> None:
    out = result.out_dir
    assert {p.name for p in out.iterdir()} >= {"plan.json", "candidates.json", "pareto.png", "search_state.json"}
    record = json.loads((out / "candidates.json").read_text())
    assert record["chosen"] == result.chosen["key"] and len(record["candidates"]) == len(result.candidates)
    assert (out / "pareto.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_unreachable_budget_says_what_is_reachable(model, data) -> None:
    smallest = prune(model, (data.train.images[:2].float(),), ratio=0.75, round_to=4, verify=False).report["macs"]
    fraction = smallest["after"] / smallest["before"]
    with pytest.raises(BudgetError) as info:
        search(model, data, dict(CONFIG, budget="macs:0.05"))
    message = str(info.value)
    assert "no candidate meets the budget macs <= 0.05" in message
    reached = f"the smallest MACs any candidate reaches is {smallest['after']:,.4g} ({fraction:.3f} of the unpruned"
    assert reached in message
    assert f"Ask for keep >= {fraction:.3f}" in message


def test_further_limits_hold_for_every_feasible_candidate(model, data) -> None:
    result = search(model, data, dict(CONFIG, budget="params:0.6", limits=["macs:0.4"]))
    base = result.unpruned
    limits = {"params": 0.6 * base["params"], "macs": 0.4 * base["macs"]}
    assert result.budget["limits"] == {"macs": pytest.approx(limits["macs"])}
    for c in result.candidates:
        assert c["feasible"] == (c["params"] <= limits["params"] * (1 + 1e-9) and c["macs"] <= limits["macs"] * (1 + 1e-9))
    assert result.chosen["feasible"] and result.chosen["macs"] <= limits["macs"]
    # the MACs limit binds: the params budget alone admits candidates above it
    alone = search(model, data, dict(CONFIG, budget="params:0.6"))
    assert any(c["feasible"] and c["macs"] > limits["macs"] for c in alone.candidates)
    with pytest.raises(BudgetError, match=r"no candidate meets the limit macs <= .* the smallest any candidate reaches"):
        search(model, data, dict(CONFIG, budget="params:0.6", limits=["macs:0.02"]))


def test_latency_target_on_a_missing_runtime_is_a_config_error(model, data, monkeypatch) -> None:
    from deepshrink.nas.search import config as config_module

    monkeypatch.setattr(config_module, "installed_providers", lambda: ["CPUExecutionProvider"])
    with pytest.raises(ConfigError, match=r"latency runtime 'ort-cuda' needs ONNX Runtime's CUDAExecutionProvider, "
                                          r"which is not installed here .*usable runtimes: ort"):
        search(model, data, dict(CONFIG, budget="latency:2x", latency={"runtime": "ort-cuda"}))
    monkeypatch.setattr(config_module, "installed_providers", lambda: [])
    with pytest.raises(ConfigError, match="latency runtime 'ort' needs onnxruntime, which is not installed"):
        SearchConfig(budget="latency:2x")
    SearchConfig(budget="macs:0.5")  # no latency target: the runtime does not matter


@pytest.mark.parametrize("text, metric, keep", [("macs:0.5", "macs", 0.5), ("latency:2x", "latency", 0.5),
                                                ("params:4x", "params", 0.25), ("bytes:0.3", "bytes", 0.3)])
def test_budget_strings(text, metric, keep) -> None:
    budget = SearchConfig(budget=text).budget
    assert (budget.metric.value, budget.keep) == (metric, pytest.approx(keep))


@pytest.mark.parametrize("options, message", [
    ({"budget": "flops:0.5"}, "budget: expected METRIC:FRACTION or METRIC:FACTORx"),
    ({"budget": "macs:0.5x"}, "a factor such as 2x must be at least 1x"),
    ({"budget": "macs:1.5"}, "budget.keep: Input should be less than or equal to 1"),
    ({"ratios": [0.2, 0.4]}, "ratios: need 0.0 and at least one larger ratio"),
    ({"population": 4, "evolution": {"elite": 4}}, "evolution.elite (4) must be below population (4)"),
    ({"generation": 3}, "generation: unknown option"),
    ({"budget": "macs:0.5", "limits": ["latency:2x"]}, "limits: latency can only be the budget itself"),
    ({"budget": "macs:0.5", "limits": ["params:0.5", "macs:0.4"]}, "limits: each metric at most once"),
])
def test_config_errors_name_the_field(options, message) -> None:
    with pytest.raises(ConfigError) as info:
        SearchConfig(**options)
    assert message in str(info.value)


def test_root_verb_and_callable_package(model, data) -> None:
    import deepshrink.nas

    assert deepshrink.search is deepshrink.nas.search and callable(deepshrink.search)
    with pytest.raises(BudgetError):
        deepshrink.search(model, data, dict(CONFIG, budget="macs:0.01"))
