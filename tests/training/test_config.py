"""TrainConfig: defaults, and bad values refused with the field's name."""

from __future__ import annotations

import pytest

from deepshrink.errors import ConfigError
from deepshrink.training import Optimizer, Schedule, TrainConfig


def test_defaults_and_weight_decay_per_optimizer():
    config = TrainConfig()
    assert (config.batch_size, config.momentum) == (128, 0.9)
    assert (config.optimizer, config.schedule) == (Optimizer.SGD, Schedule.COSINE)
    assert config.weight_decay == 5e-4
    assert TrainConfig(optimizer="adamw").weight_decay == 0.05
    assert TrainConfig(optimizer="adamw", weight_decay=0.0).weight_decay == 0.0


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"lr": -1}, "lr: Input should be greater than 0, got -1"),
        ({"optimizer": "adam2"}, "optimizer: Input should be 'sgd' or 'adamw', got 'adam2'"),
        ({"schedule": "linear"}, "schedule: Input should be 'cosine', 'step', 'onecycle' or 'constant'"),
        ({"epochs": -1}, "epochs: Input should be greater than or equal to 0"),
        ({"batch_size": 0}, "batch_size: Input should be greater than or equal to 1"),
        ({"label_smoothing": 1.0}, "label_smoothing: Input should be less than 1"),
        ({"grad_clip": 0}, "grad_clip: Input should be greater than 0"),
        ({"device": "tpu"}, "device: Input should be 'auto', 'cpu' or 'cuda'"),
        ({"learning_rate": 0.1}, "learning_rate: unknown option (known: epochs, batch_size"),
        ({"nesterov": True, "momentum": 0}, "nesterov: needs optimizer 'sgd' with momentum > 0"),
        ({"milestones": [30, 20]}, "milestones: must be positive and strictly increasing"),
        ({"epochs": 2, "warmup_epochs": 3}, "warmup_epochs: 3.0 exceeds epochs (2)"),
        ({"amp": True, "device": "cpu"}, "amp: bf16 autocast is CUDA only"),
    ],
)
def test_bad_values_name_the_field(options, message):
    with pytest.raises(ConfigError) as info:
        TrainConfig(**options)
    assert message in str(info.value)


def test_every_bad_field_is_reported_at_once():
    with pytest.raises(ConfigError) as info:
        TrainConfig(lr=-1, optimizer="adam2")
    assert "lr:" in str(info.value) and "optimizer:" in str(info.value)


def test_coerce_and_frozen():
    assert TrainConfig.coerce({"epochs": 3}).epochs == 3
    assert TrainConfig.coerce(None) == TrainConfig()
    with pytest.raises(ConfigError, match="config: expected a TrainConfig or a dict, got list"):
        TrainConfig.coerce([1])
    with pytest.raises(Exception, match="frozen"):
        TrainConfig().lr = 1.0


def test_step_milestones_default_and_resume_relevant_fields():
    assert TrainConfig(epochs=8).step_milestones() == (4, 6)
    assert TrainConfig(epochs=8, milestones=[3]).step_milestones() == (3,)
    base = TrainConfig(epochs=4)
    assert base.differing_fields(TrainConfig(epochs=9, progress=False, num_threads=1)) == []
    assert base.differing_fields(TrainConfig(epochs=4, lr=0.2, seed=1)) == ["lr", "seed"]


def test_format_errors_names_nested_fields_and_their_known_options():
    from pydantic import BaseModel, ConfigDict, ValidationError

    from deepshrink.training.config import format_errors

    class Inner(BaseModel):
        model_config = ConfigDict(extra="forbid")
        a: int = 0

    class Outer(BaseModel):
        model_config = ConfigDict(extra="forbid")
        inner: Inner | None = None
        x: int = 1

    with pytest.raises(ValidationError) as info:
        Outer(inner={"b": 1}, y=2, x="no")
    assert format_errors(info.value, Outer) == (
        "inner.b: unknown option (known: a); x: Input should be a valid integer, unable to parse string as an "
        "integer, got 'no'; y: unknown option (known: inner, x)"
    )
