"""Typed pruning options, validated when built. Python callers and the CLI go through
`parse_config`, which turns pydantic's errors into a ConfigError naming the field."""

from __future__ import annotations

import re
from enum import Enum
from typing import Annotated, Any, Literal, TypeVar, Union

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from deepshrink.errors import ConfigError
from deepshrink.pruning.selection import LayerSelection

Ratio = Annotated[float, Field(ge=0.0, lt=1.0)]


class Policy(str, Enum):
    UNIFORM = "uniform"  # the same ratio in every coupled group
    GLOBAL = "global"  # one ranking over all groups (scores normalised per group)


class Aggregate(str, Enum):
    PRODUCERS = "producers"  # the producing filters only: each criterion's paper definition
    GROUP = "group"  # plus the consumers' input weights of the same channels (DepGraph's group importance)


class Metric(str, Enum):
    MACS = "macs"
    PARAMS = "params"


class Budget(BaseModel):
    """Prune until the model keeps at most `keep` of the original MACs or parameters."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    metric: Metric = Metric.MACS
    keep: float = Field(gt=0.0, le=1.0, description="fraction of the unpruned model's count to keep")


class OneShot(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    kind: Literal["one_shot"] = "one_shot"


class Iterative(BaseModel):
    """Reach the target in `steps` equal steps of kept fraction, fine-tuning after each."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    kind: Literal["iterative"] = "iterative"
    steps: int = Field(default=3, ge=2, le=50)


Schedule = Annotated[Union[OneShot, Iterative], Field(discriminator="kind")]


class Advanced(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    tolerance: float = Field(default=1e-4, gt=0.0, description="max relative error of verified surgery")
    verify_batch: int = Field(default=2, ge=1)
    calibration_batches: int = Field(default=4, ge=1, description="batches used by taylor and hrank")
    seed: int = 0
    budget_tolerance: float = Field(default=0.01, gt=0.0, lt=0.5)


class PruneConfig(BaseModel):
    """Structured (channel) pruning. `ratio` is the fraction of each coupled group's channels removed."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    criterion: str = "fpgm"
    aggregate: Aggregate = Field(default=Aggregate.PRODUCERS, description="weights the magnitude criteria "
                                 "(l1, l2, fpgm) score: the producing filters, or the whole coupled group")
    ratio: Ratio = 0.5
    policy: Policy = Policy.UNIFORM
    ratios: dict[str, Ratio] = Field(default_factory=dict, description="layer name or regex -> ratio")
    protect: LayerSelection = LayerSelection()
    protect_ends: bool = Field(default=True, description="leave the first convolution and the classifier untouched")
    round_to: int | Literal["auto"] = Field(
        default=8, description="kept channels per group rounded to a multiple of this; 'auto': ONNX Runtime's "
        "float convolution channel block on this CPU (16 with AVX-512, else 8), resolved when the config is made")
    budget: Budget | None = None
    schedule: Schedule = OneShot()
    verify: bool = True
    advanced: Advanced = Advanced()

    @field_validator("round_to")
    @classmethod
    def _round_to(cls, value: int | str) -> int:
        if value == "auto":
            from deepshrink.quantization.cpu import ort_channel_block

            return ort_channel_block()
        if value < 1:
            raise ValueError(f"round_to must be a positive integer or 'auto', got {value}")
        return value

    @field_validator("criterion")
    @classmethod
    def _known_criterion(cls, value: str) -> str:
        from deepshrink.pruning.importance import CRITERIA

        CRITERIA.get(value)  # raises UnknownNameError listing close matches
        return value


def round_to_from_text(text: str) -> int | Literal["auto"]:
    """`round_to` as typed on a command line: 'auto' or an integer (ValueError otherwise; the
    config's validator then checks the value)."""
    return "auto" if text == "auto" else int(text)


class SensitivityOptions(BaseModel):
    """Per-group ratios from accuracy-vs-ratio curves measured on the validation split: the least
    predicted loss within the budget, or without one each group's largest ratio losing at most
    `max_drop` points."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    max_drop: float | None = Field(default=None, ge=0.0, description="without a budget: points each group may lose")
    batches: int = Field(default=8, ge=1, description="validation batches (of 256) scored per point of a curve")
    ratios: list[Annotated[float, Field(gt=0.0, lt=1.0)]] = Field(default_factory=lambda: [0.25, 0.5, 0.75],
                                                                  min_length=1)


class RankBy(str, Enum):
    ENERGY = "energy"  # the share of the residual sum's energy lost, lowest first
    LATENCY = "latency"  # that loss per millisecond of ONNX Runtime time saved, lowest first


class DepthOptions(BaseModel):
    """Depth pruning after the channels (`drop_branches`): the `count` residual branches whose
    replacement by their mean output loses least (per millisecond saved, with rank_by latency),
    or the branches `names`; `within` restricts the choice to names matching a regex (e.g.
    "^layer1\\." for the first stage)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    count: int | None = Field(default=None, ge=0, description="how many branches to drop, the lowest-ranked first")
    names: list[str] | None = Field(default=None, min_length=1, description="which branches to drop")
    within: str | None = Field(default=None, description="regex the dropped branches' names must match")
    rank_by: RankBy = Field(default=RankBy.ENERGY, description="energy lost, or energy lost per ms ONNX Runtime saves")
    latency_batch: int = Field(default=64, ge=1, description="batch size the latency ranking times")

    @model_validator(mode="after")
    def _one_choice(self) -> "DepthOptions":
        if (self.count is None) == (self.names is None):
            raise ValueError("depth needs exactly one of count and names")
        if self.within is not None:
            try:
                re.compile(self.within)
            except re.error as exc:
                raise ValueError(f"within is not a regular expression: {exc}") from None
        return self


class Scope(str, Enum):
    LAYER = "layer"  # each layer reaches the sparsity
    GLOBAL = "global"  # one magnitude threshold over all selected layers


class UnstructuredConfig(BaseModel):
    """Weight-level pruning: magnitude (layer-wise or global) or an N:M pattern such as 2:4."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    sparsity: Ratio = 0.5
    scope: Scope = Scope.LAYER
    n_m: tuple[int, int] | None = Field(default=None, description="keep N of every M weights, e.g. (2, 4)")
    protect: LayerSelection = LayerSelection()
    protect_ends: bool = True

    @field_validator("n_m")
    @classmethod
    def _valid_pattern(cls, value: tuple[int, int] | None) -> tuple[int, int] | None:
        if value is not None and not 0 < value[0] < value[1]:
            raise ValueError(f"N:M pattern needs 0 < N < M, got {value[0]}:{value[1]}")
        return value


C = TypeVar("C", bound=BaseModel)


def parse_config(cls: type[C], config: C | dict[str, Any] | None = None, **overrides: Any) -> C:
    """Build `cls` from an instance, a dict and/or keyword overrides; errors name the field."""
    data: dict[str, Any] = {}
    if isinstance(config, cls):
        data = config.model_dump(exclude_unset=True)
    elif isinstance(config, dict):
        data = dict(config)
    elif config is not None:
        raise ConfigError(f"config must be a {cls.__name__} or a dict, got {type(config).__name__}")
    data.update({k: v for k, v in overrides.items() if v is not None})
    try:
        return cls.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        field = ".".join(str(p) for p in first["loc"]) or cls.__name__
        raise ConfigError(f"{cls.__name__} field '{field}': {first['msg']} (got {first.get('input')!r})") from None
