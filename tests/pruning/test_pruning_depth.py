"""Depth pruning: residual branches found, scored, dropped with verified surgery, saved and reloaded."""

from __future__ import annotations

import pytest
import torch
from pruning_models import ConcatNet, SENet, calibration

from deepshrink.errors import ConfigError, ModelError
from deepshrink.export import export_onnx
from deepshrink.export.runtime import run_onnx
from deepshrink.metrics import count_params, macs
from deepshrink.models import create_model, load, save_model
from deepshrink.pruning import prune
from deepshrink.pruning.depth import _rank, drop_branches, find_branches
from deepshrink.pruning.trace import trace


def _resnet20():
    torch.manual_seed(0)
    return create_model("resnet20").eval()


def test_every_block_of_an_option_a_resnet_is_a_branch_the_downsampling_ones_included():
    names = [b.name for b in find_branches(trace(_resnet20(), ()))]
    assert names == [f"layer{s}.{i}" for s in (1, 2, 3) for i in range(3)]


def test_dropping_the_lowest_scored_first_stage_branch_is_verified_saved_and_exported(tmp_path):
    model = _resnet20()
    data = calibration(2)
    result = drop_branches(model, torch.randn(2, 3, 32, 32), count=1, within=r"^layer1\.", data=data)
    lost = result.report["lost_energy"]
    expected = min((n for n in lost if n.startswith("layer1.")), key=lost.get)
    assert result.report["dropped"] == [expected] and result.report["verified_rel_error"] <= 1e-4
    block_params = sum(p.numel() for p in model.get_submodule(expected).parameters())
    channels = result.plan["branches"][0]["shape"][1]
    assert count_params(result.model) == count_params(model) - block_params + channels  # + the learnable constant
    assert macs(result.model)[0] < macs(model)[0]
    assert count_params(model) == count_params(_resnet20())  # the original is untouched
    x = torch.randn(3, 3, 32, 32)
    save_model(result.model, tmp_path / "m")
    with torch.no_grad():
        out = result.model(x)
        assert torch.equal(load(tmp_path / "m").eval()(x), out)
    onnx_out = torch.from_numpy(run_onnx(export_onnx(result.model, tmp_path / "m.onnx"), x.numpy()))
    torch.testing.assert_close(onnx_out, out, atol=1e-4, rtol=1e-3)


def test_a_branch_whose_output_is_constant_loses_nothing_and_is_dropped_first():
    model = _resnet20()
    with torch.no_grad():
        model.get_submodule("layer2.1.bn2").weight.zero_()
    result = drop_branches(model, count=1, data=calibration(2))
    assert result.report["dropped"] == ["layer2.1"]
    assert result.report["lost_energy"]["layer2.1"] == pytest.approx(0.0, abs=1e-9)
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():  # the constant is the branch's bias: the function is unchanged
        torch.testing.assert_close(result.model(x), model(x), rtol=1e-5, atol=1e-5)


def test_depth_and_channel_pruning_compose_and_reload(tmp_path):
    thin = prune(_resnet20(), torch.randn(2, 3, 32, 32), criterion="fpgm", ratio=0.5, protect_ends=True).model
    result = drop_branches(thin, names=["layer1.2", "layer3.0"], data=calibration(1))
    assert result.report["dropped"] == ["layer1.2", "layer3.0"]
    save_model(result.model, tmp_path)
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(load(tmp_path).eval()(x), result.model.eval()(x))


def test_a_squeeze_excitation_branch_is_found_a_concat_net_has_none():
    assert [b.name for b in find_branches(trace(SENet(), ()))] != []
    with pytest.raises(ModelError, match="ConcatNet has no residual branch to drop"):
        drop_branches(ConcatNet(), torch.randn(2, 3, 32, 32), count=1)


def test_latency_ranking_times_every_candidate_and_drops_the_least_loss_per_millisecond():
    result = drop_branches(_resnet20(), torch.randn(2, 3, 32, 32), count=2, within=r"^layer[12]\.", data=calibration(2),
                           rank_by="latency", latency_batch=1)
    saved, lost = result.report["saved_ms"], result.report["lost_energy"]
    assert sorted(saved) == [f"layer{s}.{i}" for s in (1, 2) for i in range(3)] and result.report["rank_by"] == "latency"
    rank = _rank(lost, saved)
    assert result.report["dropped"] == sorted(saved, key=rank.get)[:2]
    assert rank["layer3.0"][0] == float("inf")  # outside `within`: not timed, never chosen


def test_a_branch_whose_removal_saves_no_time_ranks_after_every_one_that_does():
    rank = _rank({"a": 0.01, "b": 0.5, "c": 0.2}, {"a": 0.0, "b": 2.0, "c": -0.1})
    assert sorted(rank, key=rank.get) == ["b", "a", "c"]  # b saves time; a and c do not, the smaller loss first
    assert rank["b"] == (0.25, 0.5)


@pytest.mark.parametrize("options, message", [
    ({"names": ["layer9.9"]}, r"no droppable residual branch named 'layer9.9'; the branches are: layer1.0, "),
    ({"count": 4, "within": "layer1"}, r"count must be in \[0, 3\] \(the droppable branches within 'layer1'\), got 4"),
    ({"count": 1, "within": "stage7"}, r"within='stage7' matches no residual branch"),
    ({}, "pass exactly one of `names`"),
    ({"names": ["layer1.0"], "count": 1}, "pass exactly one of `names`"),
    ({"count": 1, "rank_by": "speed"}, "rank_by must be one of: energy, latency; got 'speed'"),
])
def test_bad_requests_name_what_is_wrong(options, message):
    with pytest.raises(ConfigError, match=message):
        drop_branches(_resnet20(), torch.randn(2, 3, 32, 32), **options)
