"""Policies and options: uniform and global ranking, per-layer ratios, protected layers, budgets,
rounding, iterative pruning, and the errors for bad options."""

from __future__ import annotations

import pytest
import torch
from pruning_models import PRUNABLE, TinyResNetA

from deepshrink.errors import BudgetError, ConfigError
from deepshrink.models import create_model
from deepshrink.pruning import LayerSelection, Metric, apply_plan, build_graph, make_plan, prune
from deepshrink.pruning.budget import BudgetMeter
from deepshrink.pruning.measure import count_macs, count_params


def _kept(result) -> dict[str, int]:
    return {g["name"]: g["kept"] for g in result.report["groups"]}


def test_uniform_halves_every_group_in_multiples_of_eight(x32) -> None:
    result = prune(TinyResNetA(1).eval(), x32, ratio=0.5, protect_ends=False)
    assert _kept(result) == {"conv1": 8, "layer1.0.conv1": 8, "layer2.0.conv1": 16, "layer2.0.conv2": 8,
                             "layer3.0.conv1": 32, "layer3.0.conv2": 16}


def test_global_ranking_prunes_unimportant_groups_harder(x32) -> None:
    model = TinyResNetA(1).eval()
    with torch.no_grad():  # make half of layer3.0.conv1's filters nearly useless
        model.layer3[0].conv1.weight[::2] *= 1e-3
    result = prune(model, x32, criterion="l1", ratio=0.3, policy="global", round_to=1, protect_ends=False)
    kept = _kept(result)
    total = sum(g["units"] for g in result.report["groups"])
    assert sum(kept.values()) == total - round(0.3 * total)
    assert kept["layer3.0.conv1"] == 32  # exactly the weak half went
    with pytest.raises(ConfigError, match="per-layer ratios need policy 'uniform'"):
        prune(model, x32, policy="global", ratios={"conv1": 0.5})


def test_per_layer_ratio_map_by_layer_regex_and_group(x32) -> None:
    result = prune(TinyResNetA(1).eval(), x32, ratio=0.5, round_to=1, protect_ends=False,
                   ratios={"layer1.0.conv1": 0.75, r"layer3\..*": 0.25, "conv1": 0.0})
    kept = _kept(result)
    assert (kept["layer1.0.conv1"], kept["layer3.0.conv1"], kept["conv1"], kept["layer2.0.conv1"]) == (4, 48, 16, 16)
    with pytest.raises(ConfigError, match="per-layer ratio key 'nope' matches no layer or group"):
        prune(TinyResNetA(1), x32, ratios={"nope": 0.5})


def test_protected_layers_by_name_regex_and_type(x32) -> None:
    model = TinyResNetA(1).eval()
    by_name = prune(model, x32, protect_ends=False, protect=LayerSelection(names=["layer1.0.conv1"]))
    assert "layer1.0.conv1" not in by_name.plan["layers"] and "layer1.0.conv2" not in by_name.plan["layers"]
    by_regex = prune(model, x32, protect_ends=False, protect={"regex": [r"layer2\..*"]})
    assert not any(k.startswith("layer2.") for k in by_regex.plan["layers"])
    by_type = prune(model, x32, protect_ends=False, protect={"types": ["Linear"]})
    assert "linear" not in by_type.plan["layers"]
    for selection, message in [({"names": ["layer9"]}, "name 'layer9' matches no layer"),
                               ({"regex": ["conv9.*"]}, "regex 'conv9.*' matches no layer"),
                               ({"types": ["Conv3d"]}, "type 'Conv3d' matches no layer")]:
        with pytest.raises(ConfigError, match=f"protected layers: {message}"):
            prune(model, x32, protect=selection)


def test_default_protection_keeps_first_conv_and_classifier_whole(x32) -> None:
    result = prune(TinyResNetA(1).eval(), x32)
    assert result.model.conv1.out_channels == 16 and result.model.linear.in_features == 64
    assert result.model.layer1[0].conv1.out_channels == 8


@pytest.mark.parametrize("metric", ["macs", "params"])
def test_budget_is_met_by_measurement(metric: str, x32) -> None:
    result = prune(TinyResNetA(1).eval(), x32, round_to=1, protect_ends=False, budget={"metric": metric, "keep": 0.5})
    fraction = result.report[metric]["after"] / result.report[metric]["before"]
    assert 0.45 <= fraction <= 0.5
    with pytest.raises(BudgetError, match=f"cannot reach 0.010 of the original {metric}"):
        prune(TinyResNetA(1), x32, budget={"metric": metric, "keep": 0.01})


@pytest.mark.parametrize("options, field", [({"ratio": 1.0}, "ratio"), ({"ratio": -0.1}, "ratio"),
                                            ({"round_to": 0}, "round_to"), ({"policy": "best"}, "policy"),
                                            ({"colour": "red"}, "colour"), ({"ratios": {"conv1": 1.5}}, "ratios.conv1")])
def test_bad_options_name_the_field(options, field, x32) -> None:
    with pytest.raises(ConfigError, match=f"PruneConfig field '{field}'"):
        prune(TinyResNetA(1), x32, **options)


def test_iterative_prunes_in_steps_with_finetuning(x32) -> None:
    calls = []

    def finetune(model):
        calls.append(model.conv1.out_channels)
        return model

    model = create_model("pruning_models:resnet_a").eval()
    result = prune(model, x32, ratio=0.5, round_to=1, protect_ends=False, schedule={"kind": "iterative", "steps": 2},
                   finetune=finetune)
    assert calls == [12, 8]
    replayed = apply_plan(model, result.plan)
    assert [p.shape for p in replayed.parameters()] == [p.shape for p in result.model.parameters()]
    assert result.model.deepshrink_spec.transforms == [{"kind": "prune", "plan": result.plan}]  # one composed plan
    assert len(result.report["steps"]) == 2
    with pytest.raises(ConfigError, match="schedule 'iterative' needs finetune"):
        prune(model, x32, schedule={"kind": "iterative", "steps": 2})


@pytest.mark.parametrize("name", sorted(PRUNABLE))
@pytest.mark.parametrize("metric", [Metric.MACS, Metric.PARAMS])
def test_budget_meter_equals_the_measured_pruned_model(name: str, metric: Metric, x32) -> None:
    model = PRUNABLE[name]().eval()
    graph = build_graph(model, x32)
    removal = {g.name: list(range(0, g.size, 2)) for g in graph.groups if g.size > 1}
    meter = BudgetMeter(graph, (x32,), metric)
    pruned = apply_plan(model, make_plan(graph, removal))
    measured = count_macs(pruned, (x32,)) if metric is Metric.MACS else count_params(pruned)
    assert meter.count(meter.layers(removal)) == measured


def test_budget_refines_past_rounding_jumps(x32) -> None:
    # With multiples of 8, 16-channel groups can only go 16 -> 8: the ratio alone jumps past 0.6.
    result = prune(TinyResNetA(2).eval(), x32, protect_ends=False, budget={"keep": 0.6})
    fraction = result.report["macs"]["after"] / result.report["macs"]["before"]
    assert 0.52 <= fraction <= 0.6
    assert all(g["kept"] % 8 == 0 for g in result.report["groups"])


def test_fixed_ratios_already_within_budget_are_kept(x32) -> None:
    # Before the fix, meeting the budget with the per-layer ratios alone pruned nothing at all.
    ratios = {"layer3.0.conv1": 0.5}
    plain = prune(TinyResNetA(1).eval(), x32, ratio=0.0, ratios=ratios, round_to=1, protect_ends=False)
    budgeted = prune(TinyResNetA(1).eval(), x32, ratio=0.0, ratios=ratios, round_to=1, protect_ends=False,
                     budget={"keep": 0.99})
    assert budgeted.report["macs"]["after"] == plain.report["macs"]["after"] < plain.report["macs"]["before"]
