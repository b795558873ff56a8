"""DistillConfig validation: typos and bad values fail when the config is built, naming the field."""

from __future__ import annotations

import pytest
import yaml

from deepshrink.distillation.config import DistillConfig, KDWeights, LossSpec, WeightMode, normalise_teacher_weights
from deepshrink.errors import ConfigError


def test_recipe_section_maps_onto_the_config():
    recipe = yaml.safe_load(
        """
        losses: [kd, {name: at, weight: 500, student: [layer1, layer2]}]
        temperature: 3
        weights: {alpha: 0.3, beta: 0.7}
        teacher_weights: [2, 1]
        train: {epochs: 2, lr: 0.01}
        """
    )
    config = DistillConfig(**recipe)
    assert [spec.name for spec in config.losses] == ["kd", "at"]
    assert config.losses[1].weight == 500 and config.losses[1].student == ["layer1", "layer2"]
    assert config.weights == KDWeights(alpha=0.3, beta=0.7)
    assert config.train.epochs == 2
    assert DistillConfig(weights="auto").weights is WeightMode.AUTO
    assert DistillConfig(**config.model_dump(mode="json")) == config  # the saved recipe reloads


@pytest.mark.parametrize(
    "options, message",
    [
        ({"temperature": 0}, "temperature: Input should be greater than 0, got 0"),
        ({"temperature": -2.0}, "temperature: Input should be greater than 0, got -2.0"),
        ({"losses": ["atx"]}, r"unknown distillation loss 'atx' \(did you mean: at\?\)"),
        ({"losses": []}, "losses: List should have at least 1 item"),
        ({"weights": "automatic"}, "weights.auto: Input should be 'auto', got 'automatic'"),
        ({"weights": {"alpha": -0.1}}, "alpha: Input should be greater than or equal to 0"),
        ({"weights": {"alpha": 0, "beta": 0}}, r"alpha \+ beta must be > 0"),
        ({"teacher_weights": [0, 0]}, r"teacher_weights: \[0.0, 0.0\] sum to 0.0; they must sum to a positive number"),
        ({"teacher_weights": [1, -1]}, "teacher_weights: weight 1 is -1.0; weights must be >= 0"),
        ({"losses": [{"name": "kd", "weight": 2}]}, "kd: its weight is beta in `weights`"),
        ({"losses": [{"name": "kd", "options": {"temperature": 2}}]}, "kd: set `temperature` and `weights`"),
        ({"losses": [{"name": "kd", "options": {"alpha": 0.5}}]}, r"\(alpha, beta\) at the top level, not as options"),
        ({"losses": [{"name": "at", "stduent": ["layer1"]}]}, "stduent: unknown option"),
        ({"cache_teacher_logits": True}, "cache_teacher_logits: needs un-augmented passes; set train.augment to false"),
        ({"cache_teacher_logits": True, "losses": ["kd", "at"], "train": {"augment": False}},
         "cache_teacher_logits: only logits are cached, but 'at' needs teacher features"),
        ({"train": {"lr": 0}}, "lr: Input should be greater than 0"),
        ({"temprature": 4}, "temprature: unknown option"),
    ],
)
def test_bad_options_name_the_field(options, message):
    with pytest.raises(ConfigError, match=message):
        DistillConfig(**options)


def test_teacher_weights_are_normalised():
    assert normalise_teacher_weights([3, 1], 2) == (0.75, 0.25)
    assert normalise_teacher_weights(None, 4) == (0.25,) * 4
    with pytest.raises(ConfigError, match="teacher_weights: 3 weights for 2 teachers"):
        normalise_teacher_weights([1, 1, 1], 2)
    with pytest.raises(ConfigError, match="weight 0 is nan"):
        normalise_teacher_weights([float("nan"), 1.0], 2)


def test_with_updates_revalidates_and_coerce_accepts_dicts():
    config = DistillConfig.coerce({"losses": ["kd"]})
    assert config.with_updates(temperature=2.0).temperature == 2.0
    with pytest.raises(ConfigError, match="temperature"):
        config.with_updates(temperature=-1.0)
    with pytest.raises(ConfigError, match="expected a DistillConfig or a dict, got list"):
        DistillConfig.coerce([1])
    assert DistillConfig(losses=["at"]).losses == [LossSpec(name="at")]
