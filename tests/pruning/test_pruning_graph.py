"""The channel dependency graph: coupled groups for each coupling kind, pinned channels, and the
errors for untraceable models and unknown ops."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from pruning_models import ConcatNet, ControlFlowNet, FlattenNet, GroupedNet, RollNet, SENet, SplitNet, TinyResNetA

from deepshrink.errors import ModelError, UnsupportedOpError
from deepshrink.pruning import build_graph, prune


def _groups(model, x):
    graph = build_graph(model, x)
    return graph, {g.name: g for g in graph.groups}


def _positions(group, layer, role):
    return group.members[(layer, role)][0].tolist()


def test_option_a_resnet_groups_span_the_padded_shortcuts(x32) -> None:
    graph, groups = _groups(TinyResNetA(1), x32)
    assert {n: g.size for n, g in groups.items()} == {
        "conv1": 16, "layer1.0.conv1": 16, "layer2.0.conv1": 32, "layer2.0.conv2": 16,
        "layer3.0.conv1": 64, "layer3.0.conv2": 32,
    }
    # Stage-1 channels continue in the middle of stage 2 (after 8 padded zeros) and stage 3 (after 16+8).
    stem = groups["conv1"]
    assert _positions(stem, "layer2.0.conv2", "out") == list(range(8, 24))
    assert _positions(stem, "layer3.0.conv2", "out") == list(range(24, 40))
    assert _positions(stem, "linear", "in") == list(range(24, 40))
    # The padded zeros of stage 2 are one group with the stage-2 block outputs they are added to.
    pads = groups["layer2.0.conv2"]
    assert _positions(pads, "layer2.0.shortcut", "pad") == [*range(8), *range(24, 32)]
    assert pads.members[("layer2.0.shortcut", "pad")][0].size == 16
    assert graph.pinned["linear:out"] == "model output"


def test_se_scale_is_coupled_to_the_channels_it_scales(x32) -> None:
    _, groups = _groups(SENet(), x32)
    block = groups["conv1"]
    layers = set(block.layers)
    assert {"conv1", "bn1", "conv2", "bn2", "se.fc2", "se.fc1", "conv3"} <= layers
    assert _positions(block, "se.fc2", "out") == list(range(32))
    assert _positions(block, "se.fc1", "in") == list(range(32))
    assert groups["se.fc1"].size == 8  # the SE bottleneck is its own group


def test_concat_offsets_and_aligned_chunks(x32) -> None:
    graph, groups = _groups(ConcatNet(), x32)
    # b2's 24 channels sit after b1's 16 in the BN over the concatenation and in grow/mix inputs.
    b2 = groups["b2.0"]
    assert _positions(b2, "bn", "channels") == list(range(16, 40))
    assert _positions(b2, "mix", "in") == list(range(16, 40))
    assert _positions(groups["grow"], "mix", "in") == list(range(40, 56))
    # chunk(2) must stay even: channel i of both halves is one unit.
    mix = groups["mix"]
    positions, units = mix.members[("mix", "out")]
    assert mix.size == 16 and sorted(units[positions < 16].tolist()) == sorted(units[positions >= 16].tolist())
    # x[:, :16] fixes the first 16 channels of the concatenation (b1's): they are pinned.
    assert "slices channels with constant bounds" in graph.pinned["b1:out"]


def test_grouped_depthwise_and_groupnorm_units(x32) -> None:
    _, groups = _groups(GroupedNet(), x32)
    # groups=4 over 32 inputs: index i of each group goes together -> 8 units of 4 channels.
    stem = groups["conv1"]
    assert stem.size == 8
    positions, units = stem.members[("grouped", "in")]
    assert all(set(positions[units == u] % 8) == {int(positions[units == u][0]) % 8} for u in range(8))
    # grouped -> bn2 -> prelu -> depthwise -> depthwise x2: one unit per grouped filter column.
    mid = groups["grouped"]
    assert mid.size == 12
    assert len(mid.members[("dw_mult", "out")][0]) == 96
    # GroupNorm(8, 32): channels go four at a time.
    assert groups["pw"].size == 8


def test_flatten_expands_each_channel_to_its_spatial_features(x32) -> None:
    _, groups = _groups(FlattenNet(), x32)
    last = groups["features.4"]
    positions, units = last.members[("classifier.1", "in")]
    assert len(positions) == 32 * 16
    assert units[positions // 16 == 5].tolist() == [units[np.flatnonzero(positions // 16 == 5)[0]]] * 16


def test_split_by_constant_sizes_pins_its_channels(x32) -> None:
    graph = build_graph(SplitNet(), x32)
    assert "splits channels by constant sizes" in graph.pinned["conv:out"]
    assert [g.name for g in graph.groups] == ["head"]


def test_unregistered_channel_pad_pins_only_the_zeros(x32) -> None:
    class Pad(nn.Module):
        def forward(self, x):
            return F.pad(x, (0, 0, 0, 0, 4, 4))

    model = nn.Sequential(nn.Conv2d(3, 8, 3), Pad(), nn.Conv2d(16, 4, 1))
    graph = build_graph(model, x32)
    assert [g.size for g in graph.groups] == [8]  # conv 0's channels still prune
    assert "register its module with register_channel_pad" in graph.pinned["2:in"]


def test_layernorm_over_channels_pins_them() -> None:
    model = nn.Sequential(nn.Linear(6, 16), nn.LayerNorm(16), nn.Linear(16, 3))
    graph = build_graph(model, torch.randn(2, 6))
    assert graph.groups == [] and "LayerNorm '1' normalises over the channel dimension" in graph.pinned["0:out"]


def test_shared_module_couples_its_call_sites(x32) -> None:
    class Shared(nn.Module):
        def __init__(self):
            super().__init__()
            self.a, self.b, self.conv = nn.Conv2d(3, 8, 1), nn.Conv2d(3, 8, 1), nn.Conv2d(8, 8, 1)
            self.fc = nn.Linear(16, 2)

        def forward(self, x):
            y = torch.cat([self.conv(self.a(x)), self.conv(self.b(x))], 1)
            return self.fc(y.mean((2, 3)))

    _, groups = _groups(Shared(), x32)
    # a's and b's outputs feed the same weights: their channel i goes together.
    assert groups["a"].size == 8 and "b" in groups["a"].layers


def test_untraceable_model_names_the_construct(x32) -> None:
    with pytest.raises(ModelError, match=r"cannot trace ControlFlowNet.*pruning_models.py:\d+ `if x.sum\(\) > 0:"):
        build_graph(ControlFlowNet(), x32)


def test_unknown_op_names_the_op_and_node(x32) -> None:
    with pytest.raises(UnsupportedOpError, match=r"function 'torch.roll' at graph node 'roll' has no channel semantics"):
        build_graph(RollNet(), x32)


def test_unknown_module_type_is_an_error(x32) -> None:
    model = nn.Sequential(nn.Conv2d(3, 8, 3), nn.ChannelShuffle(2))
    with pytest.raises(UnsupportedOpError, match=r"module ChannelShuffle \('1'\) at graph node '_1'"):
        build_graph(model, x32)


class _Shuffle(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv, self.head = nn.Conv2d(3, 8, 1), nn.Conv2d(8, 4, 1)

    def forward(self, x):
        y = self.conv(x)
        n, h, w = y.shape[0], y.shape[2], y.shape[3]
        return self.head(y.reshape(n, 2, -1, h, w).transpose(1, 2).reshape(n, -1, h, w))


def test_channel_shuffle_keeps_groups_equal_and_permutes(x32) -> None:
    graph, groups = _groups(_Shuffle(), x32)
    group = groups["conv"]
    assert group.size == 4  # channel i of both shuffle groups goes together
    positions, units = group.members[("head", "in")]
    # After the shuffle, head input 2i and 2i+1 come from conv channels i and i+4: one unit.
    assert [int(units[positions == 2 * i][0]) for i in range(4)] == [int(units[positions == 2 * i + 1][0]) for i in range(4)]
    result = prune(_Shuffle().eval(), x32, ratio=0.5, round_to=1, protect_ends=False)
    assert result.model.conv.out_channels == 4 and result.report["verification"]["max_relative_error"] < 1e-5


def test_reshape_that_mixes_channels_is_an_error(x32) -> None:
    class Mix(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(3, 8, 1)

        def forward(self, x):
            y = self.conv(x)
            return y.view(y.size(0), 4, -1, y.size(3))

    with pytest.raises(UnsupportedOpError, match=r"method '.view\(\)' at graph node 'view' reshapes .* mixes the channel"):
        build_graph(Mix(), x32)


def test_no_example_inputs_and_no_spec_is_an_error() -> None:
    with pytest.raises(ModelError, match="pass example_inputs"):
        build_graph(nn.Conv2d(3, 3, 1))
