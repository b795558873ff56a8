"""Typed distillation options, validated when built: a bad value raises ConfigError naming the
field. A recipe section maps directly onto DistillConfig, e.g.

    losses: [kd, {name: at, weight: 500}]
    temperature: 4
    weights: {alpha: 0.1, beta: 0.9}     # or: weights: auto (seed 001 eq. 7)
    train: {epochs: 30, lr: 0.01}
    hint_epochs: 0                       # > 0: FitNets/FSP two-stage training, see DistillConfig
"""

from __future__ import annotations

from enum import Enum
from typing import Annotated, Any, Union

from pydantic import Discriminator, Field, Tag, field_validator, model_validator

from deepshrink.configs import StrictConfig
from deepshrink.errors import ConfigError
from deepshrink.training.config import TrainConfig


_Strict = StrictConfig


class KDWeights(_Strict):
    """The two weights of seed 001 eq. 1: L = alpha CE(y, p) + beta CE(q, p)."""

    alpha: float = Field(0.1, ge=0, description="weight of the hard-label term CE(y, p)")
    beta: float = Field(0.9, ge=0, description="weight of the teacher term CE(q, p) (T^2-scaled)")

    @model_validator(mode="after")
    def _positive(self) -> "KDWeights":
        if not self.alpha + self.beta > 0:
            raise ValueError(f"alpha + beta must be > 0, got alpha={self.alpha}, beta={self.beta}")
        return self


class WeightMode(str, Enum):
    AUTO = "auto"  # measure I_A, I_B on a probe student and apply seed 001 eq. 7


class Split(str, Enum):
    VAL = "val"
    TEST = "test"


class AutoWeights(_Strict):
    """How `weights: auto` measures I_A and I_B: a probe student C is trained once alone, once
    distilled from the teacher A and once from the second source B, with the same seed, data
    order, temperature, weights and budget; improvements are top-1 points on `split`."""

    probe: str | None = Field(None, description="zoo name of C; None: a freshly initialised copy of the student")
    epochs: int = Field(1, ge=1, description="training budget of each probe run")
    limit_batches: int | None = Field(None, ge=1, description="cap batches per probe epoch")
    probe_weights: KDWeights = Field(default_factory=KDWeights, description="alpha, beta of both probe distillations")
    split: Split = Split.VAL
    repeats: int = Field(1, ge=1, description="average I_A, I_B over this many seeds")


class LossSpec(_Strict):
    """One loss: a LOSSES name, its weight, the module paths it reads and its options. Paths given
    for only one side are used for both (same-architecture and pruned-copy pairs)."""

    name: str
    weight: float | None = Field(None, ge=0, description="None: the loss's default (kd: use weights.beta)")
    student: list[str] = Field(default_factory=list, description="student module paths; [] = the loss's default taps")
    teacher: list[str] = Field(default_factory=list, description="teacher module paths, paired in order")
    options: dict[str, float | int | bool | str] = Field(default_factory=dict)

    @model_validator(mode="before")
    @classmethod
    def _from_name(cls, data: Any) -> Any:
        return {"name": data} if isinstance(data, str) else data

    @field_validator("name")
    @classmethod
    def _registered(cls, name: str) -> str:
        from deepshrink.distillation.losses import LOSSES

        LOSSES.get(name)  # raises UnknownNameError listing the close matches
        return name

    @model_validator(mode="after")
    def _kd_fields(self) -> "LossSpec":
        if self.name == "kd":
            if self.weight is not None:
                raise ValueError("kd: its weight is beta in `weights` (seed 001 eq. 1), not a per-loss weight")
            if self.options:
                raise ValueError("kd: set `temperature` and `weights` (alpha, beta) at the top level, not as options")
            if self.student or self.teacher:
                raise ValueError("kd: reads the logits, so it takes no module paths")
        return self


def reads_features(spec: LossSpec) -> bool:
    """Whether a loss reads intermediate features (a hint-stage loss) rather than the logits."""
    from deepshrink.distillation.losses import LOSSES
    from deepshrink.distillation.taps import TapKind

    return LOSSES.get(spec.name).taps is not TapKind.LOGITS or bool(spec.student or spec.teacher)


def _weights_tag(value: Any) -> str:
    return "auto" if isinstance(value, (str, WeightMode)) else "fixed"


Weights = Annotated[
    Union[Annotated[KDWeights, Tag("fixed")], Annotated[WeightMode, Tag("auto")]],
    Discriminator(_weights_tag),
]


# Recovery of a compressed model from its own original (pruned or decomposed): Hinton KD at T 4 with
# most weight on the teacher, whose soft targets carry more per step than labels alone.
RECOVERY_KD: dict[str, Any] = {"losses": ["kd"], "temperature": 4.0, "weights": {"alpha": 0.1, "beta": 0.9}}


class DistillConfig(_Strict):
    losses: list[LossSpec] = Field(default_factory=lambda: [LossSpec(name="kd")], min_length=1)
    temperature: float = Field(4.0, gt=0, description="softmax temperature T of kd (seed 001 eq. 3)")
    weights: Weights = Field(default_factory=KDWeights, description="alpha, beta of eq. 1, or 'auto' (eq. 7)")
    teacher_weights: list[float] | None = Field(None, description="one per teacher, normalised to sum 1; None: equal")
    cache_teacher_logits: bool = Field(
        False, description="reuse teacher logits of identical images (needs train.augment false)"
    )
    auto: AutoWeights = Field(default_factory=AutoWeights)
    train: TrainConfig = Field(default_factory=TrainConfig)
    hint_epochs: int = Field(
        0, ge=0, description="two-stage training as FitNets and FSP train: first this many epochs on the feature "
        "and relation losses alone (no labels), then train.epochs on the labels and the logit losses"
    )

    @field_validator("teacher_weights")
    @classmethod
    def _teacher_weights(cls, weights: list[float] | None) -> list[float] | None:
        if weights is not None:
            normalise_teacher_weights(weights, len(weights))
        return weights

    @model_validator(mode="after")
    def _cache(self) -> "DistillConfig":
        if self.cache_teacher_logits:
            feature = [spec.name for spec in self.losses if spec.name != "kd"]
            if feature:
                raise ValueError(
                    f"cache_teacher_logits: only logits are cached, but '{feature[0]}' needs teacher features"
                )
            if self.train.augment:
                raise ValueError("cache_teacher_logits: needs un-augmented passes; set train.augment to false")
        return self

    @model_validator(mode="after")
    def _hint_stage(self) -> "DistillConfig":
        if not self.hint_epochs:
            return self
        features = [spec.name for spec in self.losses if reads_features(spec)]
        if not features:
            raise ValueError(f"hint_epochs: the hint stage trains on feature or relation losses (e.g. fitnet, fsp, "
                             f"at), but the losses are only {', '.join(spec.name for spec in self.losses)}")
        alpha = getattr(self.weights, "alpha", 1.0)  # 'auto' resolves to a positive alpha
        if not alpha and len(features) == len(self.losses):
            raise ValueError("hint_epochs: after the hint stage the student learns from the labels (weights.alpha) "
                             "and the logit losses (e.g. kd), but alpha is 0 and every loss reads features")
        return self

    @classmethod
    def coerce(cls, config: "DistillConfig | dict[str, Any] | None") -> "DistillConfig":
        """A DistillConfig from itself, a dict of options (a recipe section) or None (defaults)."""
        if isinstance(config, cls):
            return config
        if config is None or isinstance(config, dict):
            return cls(**(config or {}))
        raise ConfigError(f"config: expected a DistillConfig or a dict, got {type(config).__name__}")

    def with_updates(self, **update: Any) -> "DistillConfig":
        """A validated copy with some fields replaced (model_copy would skip validation)."""
        return DistillConfig(**{**self.model_dump(exclude=set(update)), **update})


def normalise_teacher_weights(weights: list[float] | tuple[float, ...] | None, teachers: int) -> tuple[float, ...]:
    """One non-negative weight per teacher, scaled to sum 1 (equal weights when None)."""
    if weights is None:
        return tuple(1.0 / teachers for _ in range(teachers))
    if len(weights) != teachers:
        raise ConfigError(f"teacher_weights: {len(weights)} weights for {teachers} teachers")
    for index, w in enumerate(weights):
        if not w >= 0:  # also rejects NaN
            raise ConfigError(f"teacher_weights: weight {index} is {w}; weights must be >= 0")
    total = float(sum(weights))
    if not total > 0:
        raise ConfigError(f"teacher_weights: {list(weights)} sum to {total}; they must sum to a positive number")
    return tuple(float(w) / total for w in weights)
