"""Physical removal and verified surgery: a new, smaller plain module equal to the original with
the pruned channels zeroed; it trains, saves, reloads from its plan and exports to ONNX."""

from __future__ import annotations

import copy
import json

import pytest
import torch
from pruning_models import PRUNABLE, GroupedNet, TinyResNetA

from deepshrink.errors import ModelError, VerificationError
from deepshrink.models import create_model, load, save_model
from deepshrink.pruning import apply_plan, build_graph, compose_plans, make_plan, prune, verify_surgery
from deepshrink.pruning.plan import zero_removed


def _resnet() -> torch.nn.Module:
    return create_model("pruning_models:resnet_a", input_size=(3, 32, 32)).eval()


@pytest.mark.parametrize("name", sorted(PRUNABLE))
def test_pruned_model_matches_the_zeroed_original(name: str, x32) -> None:
    model = PRUNABLE[name]().eval()
    before = copy.deepcopy(model.state_dict())
    result = prune(model, x32, ratio=0.5, round_to=1, protect_ends=False)
    assert result.model is not model
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())  # original untouched
    assert result.report["params"]["after"] < 0.6 * result.report["params"]["before"]
    assert result.report["verification"]["max_relative_error"] <= 1e-4
    reference = zero_removed(copy.deepcopy(model), result.plan)
    with torch.no_grad():
        assert torch.allclose(result.model.eval()(x32), reference(x32), rtol=1e-4, atol=1e-5)
    json.dumps(result.plan)  # the plan is plain JSON data


def test_ratio_zero_is_the_exact_identity(x32) -> None:
    model = TinyResNetA(1).eval()
    result = prune(model, x32, ratio=0.0)
    assert result.plan["layers"] == {}
    with torch.no_grad():
        assert torch.equal(result.model(x32), model(x32))


def test_surgery_updates_shapes_pad_widths_and_groups(x32) -> None:
    result = prune(TinyResNetA(1).eval(), x32, ratio=0.5, round_to=8, protect_ends=False)
    m = result.model
    assert (m.conv1.out_channels, m.bn1.num_features, m.linear.in_features) == (8, 8, 32)
    shortcut = m.layer2[0].shortcut
    assert (m.layer2[0].conv2.out_channels, shortcut.front + shortcut.back) == (16, 8)
    assert m.layer3[0].shortcut.front + m.layer3[0].shortcut.back == 16
    g = prune(GroupedNet().eval(), x32, ratio=0.5, round_to=1, protect_ends=False).model
    assert (g.grouped.in_channels, g.grouped.out_channels, g.grouped.groups) == (16, 24, 4)
    assert (g.dw.in_channels, g.dw.groups, g.dw_mult.out_channels, g.dw_mult.groups) == (24, 24, 48, 24)
    assert (g.gn.num_channels, g.gn.num_groups) == (16, 4)


def test_pruned_model_trains(x32) -> None:
    model = prune(TinyResNetA(1), x32, ratio=0.5, protect_ends=False).model.train()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    labels = torch.tensor([1, 2])
    losses = []
    for _ in range(5):
        loss = torch.nn.functional.cross_entropy(model(x32), labels)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0]


def test_plan_and_weights_reload_to_identical_outputs(tmp_path, x32) -> None:
    model = _resnet()
    result = prune(model, ratio=0.5, round_to=1, protect_ends=False)
    assert result.model.deepshrink_spec.transforms[-1] == {"kind": "prune", "plan": result.plan}
    save_model(result.model, tmp_path)
    reloaded = load(tmp_path).eval()
    with torch.no_grad():
        assert torch.equal(reloaded(x32), result.model.eval()(x32))


def test_onnx_export_of_pruned_model_matches(tmp_path, x32) -> None:
    from deepshrink.export import export_onnx
    from deepshrink.export.runtime import run_onnx

    pruned = prune(_resnet(), ratio=0.5, protect_ends=False).model.eval()
    path = export_onnx(pruned, tmp_path / "m.onnx")
    with torch.no_grad():
        assert torch.allclose(torch.from_numpy(run_onnx(path, x32.numpy())), pruned(x32), atol=1e-4)


def test_plans_compose(x32) -> None:
    model = TinyResNetA(1).eval()
    first = prune(model, x32, ratio=0.25, round_to=1, protect_ends=False)
    second = prune(first.model, x32, ratio=0.25, round_to=1, protect_ends=False)
    composed = compose_plans(first.plan, second.plan)
    once = apply_plan(model, composed)
    with torch.no_grad():
        assert torch.allclose(once.eval()(x32), second.model.eval()(x32), atol=1e-6)
    assert once.conv1.out_channels == 9


def test_verification_names_the_faulty_group(x32) -> None:
    model = TinyResNetA(1).eval()
    graph = build_graph(model, x32)
    plan = make_plan(graph, {"layer1.0.conv1": [0, 1, 2, 3]})
    bad = copy.deepcopy(plan)
    bad["layers"]["layer1.0.conv2"]["in"] = list(range(12))  # keeps the wrong input channels
    with pytest.raises(VerificationError, match=r"group 'layer1.0.conv1' failed verification: layer 'layer1.0.conv2'"):
        verify_surgery(model, apply_plan(model, bad), bad, (x32,))
    assert verify_surgery(model, apply_plan(model, plan), plan, (x32,)) < 1e-5


def test_bad_plans_name_the_layer(x32) -> None:
    model = TinyResNetA(1)
    with pytest.raises(ModelError, match="names layer 'nope'"):
        apply_plan(model, {"version": 1, "layers": {"nope": {"out": [0]}}})
    with pytest.raises(ModelError, match="layer 'conv1' role 'out': kept indices must be increasing and below 16"):
        apply_plan(model, {"version": 1, "layers": {"conv1": {"out": [3, 99]}}})
    with pytest.raises(ModelError, match="version 7"):
        apply_plan(model, {"version": 7, "layers": {}})


def test_parameters_read_in_forward_are_cut_too(x32) -> None:
    class LayerScale(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.conv, self.head = torch.nn.Conv2d(3, 16, 3), torch.nn.Conv2d(16, 4, 1)
            self.gamma = torch.nn.Parameter(torch.rand(1, 16, 1, 1))

        def forward(self, x):
            return self.head(torch.relu(self.conv(x)) * self.gamma)

    model = LayerScale().eval()
    result = prune(model, x32, ratio=0.5, round_to=1, protect_ends=False)
    kept = result.plan["layers"]["gamma"]["param"]
    assert result.model.gamma.shape == (1, 8, 1, 1) and result.plan["layers"]["gamma"]["dim"] == 1
    assert torch.equal(result.model.gamma.flatten(), model.gamma.flatten()[kept])
    assert result.report["verification"]["max_relative_error"] < 1e-5
