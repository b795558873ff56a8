"""Typed options: parsing from instances, dicts and YAML, and errors that name the field."""

from __future__ import annotations

import pytest
import torch.nn as nn

from deepshrink.cli.main import main
from deepshrink.errors import ConfigError
from deepshrink.pruning import LayerSelection, PruneConfig, UnstructuredConfig
from deepshrink.pruning.config import Iterative, Policy, parse_config


def test_overrides_apply_on_top_of_a_config() -> None:
    base = PruneConfig(criterion="l1", ratio=0.3, round_to=4)
    cfg = parse_config(PruneConfig, base, ratio=0.6, criterion=None)
    assert (cfg.criterion, cfg.ratio, cfg.round_to) == ("l1", 0.6, 4)
    cfg = parse_config(PruneConfig, {"policy": "global", "schedule": {"kind": "iterative", "steps": 4}})
    assert cfg.policy is Policy.GLOBAL and cfg.schedule == Iterative(steps=4)


@pytest.mark.parametrize("data, message", [
    ({"protect": {"regex": ["("]}}, "field 'protect.regex': Value error, invalid regular expression '('"),
    ({"schedule": {"kind": "iterative", "steps": 1}}, "field 'schedule.iterative.steps'"),
    ({"budget": {"keep": 0}}, "field 'budget.keep'"),
    ({"advanced": {"tolerance": 0}}, "field 'advanced.tolerance'"),
    ({"round_to": 0}, "field 'round_to': Value error, round_to must be a positive integer or 'auto', got 0"),
    ({"round_to": "fast"}, "field 'round_to"),
])
def test_invalid_fields_are_named(data, message) -> None:
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        parse_config(PruneConfig, data)


@pytest.mark.parametrize("flags, block", [({"avx2", "fma"}, 8), ({"avx2", "avx512f", "avx512_vnni"}, 16), (None, 8)])
def test_round_to_auto_is_this_cpus_channel_block(monkeypatch, flags, block) -> None:
    monkeypatch.setattr("deepshrink.quantization.cpu.cpu_flags", lambda: None if flags is None else frozenset(flags))
    assert parse_config(PruneConfig, {"round_to": "auto"}).round_to == block  # resolved once: the plan records it


def test_layer_selection_accepts_classes_and_matches_subclasses() -> None:
    class MyConv(nn.Conv2d):
        pass

    model = nn.Sequential(MyConv(3, 4, 1), nn.ReLU(), nn.Linear(4, 2))
    assert LayerSelection(types=[nn.Conv2d]).resolve(model) == {"0"}
    assert LayerSelection(names=["2"], regex=["[01]"]).resolve(model) == {"0", "1", "2"}
    with pytest.raises(ConfigError, match=r"type 'Conv1d' matches no layer \(did you mean: Conv2d, "):
        LayerSelection(types=["Conv1d"]).resolve(model)


def test_unstructured_config_validation() -> None:
    with pytest.raises(ConfigError, match="UnstructuredConfig field 'scope'"):
        parse_config(UnstructuredConfig, scope="everywhere")
    assert parse_config(UnstructuredConfig, {"n_m": [2, 4]}).n_m == (2, 4)


def test_cli_reads_a_yaml_config_and_flags_override_it(tmp_path) -> None:
    recipe = tmp_path / "prune.yaml"
    recipe.write_text("criterion: l1\nratio: 0.25\nround_to: 4\nprotect_ends: false\n")
    assert main(["prune", "--model", "resnet20", "--config", str(recipe), "--ratio", "0.5",
                 "--out", str(tmp_path / "o")]) == 0
    resolved = (tmp_path / "o" / "prune_config.json").read_text()
    assert '"criterion": "l1"' in resolved and '"ratio": 0.5' in resolved and '"round_to": 4' in resolved
    recipe.write_text("criterion: l1\nbogus: 1\n")
    assert main(["prune", "--model", "resnet20", "--config", str(recipe), "--out", str(tmp_path / "p")]) == 2
