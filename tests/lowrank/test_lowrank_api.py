"""`decompose` on whole models: rank rules, budgets, exclusions, the recorded plan, save/load
replay, ONNX export, and the errors a user sees."""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn

import deepshrink
from deepshrink.errors import BudgetError, ConfigError, ModelError
from deepshrink.export import check_onnx_matches, export_onnx
from deepshrink.lowrank import Method, decompose, replay
from deepshrink.metrics import count_params, macs
from deepshrink.models import load, save_model
from lowrank_models import relative_error

CONVS = ["body.0", "body.2", "body.6"]  # body.4 is grouped: never picked automatically
QUICK = {"cp_iterations": 30}


def _plan(model: nn.Module) -> dict:
    return model.deepshrink_spec.transforms[-1]["plan"]


def test_root_verb_is_the_family_verb() -> None:
    assert deepshrink.decompose is decompose


@pytest.mark.parametrize("method", list(Method), ids=lambda m: m.value)
def test_decompose_returns_a_new_model_with_a_replayable_plan(tiny: nn.Module, images: torch.Tensor, method: Method, tmp_path) -> None:
    before = {k: v.clone() for k, v in tiny.state_dict().items()}
    ranks = {"body.0": 3, "body.2": 4, "hidden": 5} if method is not Method.TUCKER else {"body.0": (3, 2), "body.2": 4, "hidden": 5}
    new = decompose(tiny, method=method.value, ranks=ranks, advanced=QUICK)

    assert new is not tiny and isinstance(tiny.body[0], nn.Conv2d)  # the original is untouched
    assert all(torch.equal(before[k], v) for k, v in tiny.state_dict().items())
    assert isinstance(new.body[0], nn.Sequential) and isinstance(new.hidden, nn.Sequential)
    plan = _plan(new)
    assert plan["method"] == method.value
    assert [(e["name"], e["method"]) for e in plan["layers"]] == [
        ("body.0", method.value), ("body.2", method.value), ("hidden", "svd")
    ]
    assert plan["layers"][0]["ranks"] == ([3, 2] if method is Method.TUCKER else [3])

    save_model(new, tmp_path / "m")
    loaded = load(tmp_path / "m")
    with torch.no_grad():
        assert torch.equal(loaded.eval()(images), new.eval()(images))
    assert loaded.deepshrink_spec == new.deepshrink_spec


@pytest.mark.parametrize("method", list(Method), ids=lambda m: m.value)
def test_decomposed_model_exports_to_onnx_and_matches_in_onnx_runtime(tiny: nn.Module, method: Method, tmp_path) -> None:
    new = decompose(tiny, method=method.value, ratio=2, advanced=QUICK)
    path = export_onnx(new, tmp_path / "m.onnx")
    assert check_onnx_matches(new, path, batch_size=3) < 1e-4


@pytest.mark.parametrize("method", list(Method), ids=lambda m: m.value)
def test_full_ranks_reproduce_the_whole_model(tiny: nn.Module, images: torch.Tensor, method: Method) -> None:
    full = {n: tiny.get_submodule(n) for n in [*CONVS, "hidden"]}
    ranks = {n: list(deepshrink.lowrank.decomposer_for(n, m, method).max_rank()) for n, m in full.items()}
    new = decompose(tiny, method=method.value, ranks={n: tuple(r) if len(r) == 2 else r[0] for n, r in ranks.items()})
    with torch.no_grad():
        assert relative_error(new(images), tiny(images)) < 1e-4


@pytest.mark.parametrize("method", list(Method), ids=lambda m: m.value)
@pytest.mark.parametrize("ratio", [1.5, 3.0])
def test_ratio_budget_on_params_is_met_closely(tiny: nn.Module, method: Method, ratio: float) -> None:
    new = decompose(tiny, method=method.value, ratio=ratio, advanced=QUICK)
    achieved = count_params(tiny) / count_params(new)
    assert ratio <= achieved < ratio * 1.06
    names = [e["name"] for e in _plan(new)["layers"]]
    assert "stem" not in names and "fc" not in names and "body.4" not in names  # protected / grouped
    assert isinstance(new.stem, nn.Conv2d) and isinstance(new.fc, nn.Linear)


def test_ratio_budget_on_macs_uses_the_measured_macs(tiny: nn.Module) -> None:
    new = decompose(tiny, method="tucker", ratio=2.5, budget="macs")
    achieved = macs(tiny)[0] / macs(new)[0]
    assert 2.5 <= achieved < 2.5 * 1.06


def test_zoo_resnet_at_5x_fewer_params() -> None:
    model = deepshrink.create_model("resnet20")
    new = decompose(model, method="spatial", ratio=5)
    assert 5 <= count_params(model) / count_params(new) < 5.1
    assert len(_plan(new)["layers"]) == 18  # every 3x3 conv but the stem; the classifier is kept


def test_energy_keeps_more_rank_for_more_energy(tiny: nn.Module) -> None:
    low = {e["name"]: e["ranks"] for e in _plan(decompose(tiny, method="svd", energy=0.5, exclude=[]))["layers"]}
    high = {e["name"]: e["ranks"] for e in _plan(decompose(tiny, method="svd", energy=0.95, exclude=[]))["layers"]}
    assert set(high) <= set(low)  # a layer is only decomposed when that saves parameters
    assert all(low[n][0] <= high[n][0] for n in high)
    assert sum(r[0] for r in low.values()) < sum(r[0] for r in high.values()) + sum(
        tiny.get_submodule(n).weight.shape[0] for n in set(low) - set(high)
    )


def test_vbmf_picks_the_rank_of_a_planted_low_rank_layer(tiny: nn.Module) -> None:
    # body.6 = a rank-(5, 4) Tucker tensor plus small noise: VBMF should find exactly that.
    gen = torch.Generator().manual_seed(0)
    core = torch.randn(5, 4, 3, 3, generator=gen)
    u_out, u_in = torch.linalg.qr(torch.randn(24, 5, generator=gen))[0], torch.linalg.qr(torch.randn(16, 4, generator=gen))[0]
    with torch.no_grad():
        tiny.body[6].weight.copy_(torch.einsum("abhw,oa,ib->oihw", core, u_out, u_in) + 0.001 * torch.randn(24, 16, 3, 3, generator=gen))
    plan = {e["name"]: e["ranks"] for e in _plan(decompose(tiny, method="tucker", ranks="vbmf"))["layers"]}
    assert plan["body.6"] == [5, 4]


def test_sensitivity_allocation_meets_the_budget_and_beats_uniform(tiny: nn.Module, images: torch.Tensor) -> None:
    with torch.no_grad():  # make body.2 matter much less than body.6 for the output
        tiny.body[2].weight.mul_(0.05)
    uniform = decompose(tiny, method="svd", ratio=2)
    sensitive = decompose(tiny, method="svd", ratio=2, allocation="sensitivity", calibration=images)
    assert count_params(tiny) / count_params(sensitive) >= 2
    with torch.no_grad():
        reference = tiny(images)
        assert relative_error(sensitive(images), reference) < relative_error(uniform(images), reference)


def test_exclude_patterns_and_empty_exclude(tiny: nn.Module) -> None:
    names = [e["name"] for e in _plan(decompose(tiny, method="svd", ratio=1.05, exclude=["body.*", "fc"]))["layers"]]
    assert names == ["stem", "hidden"]
    names = [e["name"] for e in _plan(decompose(tiny, method="svd", ratio=1.5, exclude=[]))["layers"]]
    assert "stem" in names and "fc" in names and "body.4" not in names


def test_exclude_matching_nothing_is_an_error(tiny: nn.Module) -> None:
    with pytest.raises(ConfigError, match=r"exclude: 'body\.9' matches no layer of the model \(did you mean: body\.7"):
        decompose(tiny, ratio=2, exclude=["body.9"])


def test_bad_ranks_name_the_layer(tiny: nn.Module) -> None:
    with pytest.raises(ConfigError, match=r"layer 'body.2' \(Conv2d 16->16, 3x5\): tucker rank \[17, 4\] is out of range; it allows 1..\[16, 16\]"):
        decompose(tiny, ranks={"body.2": (17, 4)})
    with pytest.raises(ConfigError, match=r"ranks: no layer named 'body.22' \(did you mean: body.2"):
        decompose(tiny, ranks={"body.22": 3})
    with pytest.raises(ModelError, match=r"layer 'bn' \(BatchNorm2d\) cannot be decomposed"):
        decompose(tiny, ranks={"bn": 3})
    with pytest.raises(ModelError, match=r"layer 'body.4' is a grouped convolution \(groups=4\)"):
        decompose(tiny, method="cp", ranks={"body.4": 3})
    with pytest.raises(ConfigError, match=r"layer 'stem' is both excluded and given a rank"):
        decompose(tiny, ranks={"stem": 2}, exclude=["stem"])


def test_bad_options_name_the_field(tiny: nn.Module) -> None:
    with pytest.raises(ConfigError, match=r"give exactly one rank rule.*\(got ratio, energy\)"):
        decompose(tiny, ratio=2, energy=0.9)
    with pytest.raises(ConfigError, match=r"give exactly one rank rule"):
        decompose(tiny)
    with pytest.raises(ConfigError, match=r"method: Input should be 'tucker', 'cp', 'svd' or 'spatial', got 'tt'"):
        decompose(tiny, method="tt", ratio=2)
    with pytest.raises(ConfigError, match=r"ratio: Input should be greater than 1"):
        decompose(tiny, ratio=0.5)
    with pytest.raises(ConfigError, match=r"energy: Input should be less than or equal to 1"):
        decompose(tiny, energy=1.5)
    with pytest.raises(ConfigError, match=r"budget only apply with ratio="):
        decompose(tiny, energy=0.9, budget="macs")
    with pytest.raises(ConfigError, match=r"allocation 'sensitivity' needs calibration images"):
        decompose(tiny, ratio=2, allocation="sensitivity")
    with pytest.raises(ConfigError, match=r"unknown option"):
        decompose(tiny, ratio=2, advanced={"cp_iters": 3})


def test_unreachable_ratio_says_what_is_achievable(tiny: nn.Module) -> None:
    with pytest.raises(BudgetError, match=r"ratio 1000 on params is not reachable: .* so at most \d+\.\d\dx"):
        decompose(tiny, ratio=1000)


def test_replay_rejects_a_plan_that_does_not_fit_the_model(tiny: nn.Module) -> None:
    with pytest.raises(ModelError, match=r"transform 'decompose': the model has no layer 'body.9'"):
        replay(tiny, {"method": "svd", "layers": [{"name": "body.9", "method": "svd", "ranks": [2]}]})
    with pytest.raises(ModelError, match=r"transform 'decompose': layer 'fc' \(Linear 32->10\) cannot use method 'cp'"):
        replay(tiny, {"method": "cp", "layers": [{"name": "fc", "method": "cp", "ranks": [2]}]})
    with pytest.raises(ModelError, match=r"transform 'decompose': invalid plan"):
        replay(tiny, {"method": "svd", "layers": [{"name": "fc", "ranks": [2]}]})


def test_macs_budget_without_a_spec_asks_for_the_input_size() -> None:
    from lowrank_models import tiny_cnn

    bare = tiny_cnn()  # no DeepShrink spec
    with pytest.raises(ConfigError, match=r"budget 'macs' needs the input size"):
        decompose(bare, ratio=2, budget="macs")
    new = decompose(bare, ratio=2, budget="macs", calibration=torch.randn(2, 3, 16, 16))
    assert macs(bare, (3, 16, 16))[0] / macs(new, (3, 16, 16))[0] >= 2
    assert not hasattr(new, "deepshrink_spec")  # nothing to record the plan in
