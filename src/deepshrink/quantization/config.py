"""Typed options of `deepshrink.quantize`. Built once at the edge; a bad value raises ConfigError
naming the field, so nothing downstream re-checks it."""

from __future__ import annotations

from enum import Enum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from deepshrink.errors import ConfigError
from deepshrink.quantization.primitives import MAX_BITS, MIN_BITS
from deepshrink.training.config import TrainConfig, format_errors


class Method(str, Enum):
    PTQ = "ptq"
    QAT = "qat"


class ObserverName(str, Enum):
    MINMAX = "minmax"
    MOVING_AVERAGE = "moving_average"
    PERCENTILE = "percentile"
    MSE = "mse"
    KL = "kl"


class WeightQuantizer(str, Enum):
    MINMAX = "minmax"  # per-channel max |w| (PTQ default; plain STE during QAT)
    MSE = "mse"  # per-channel clipping that minimises the weight's quantisation MSE
    LSQ = "lsq"  # learnable step size (Esser et al. 2020)
    LSQ_MIDRISE = "lsq_midrise"  # learnable step size on a grid without zero: 2^b levels, odd codes
    DOREFA = "dorefa"  # tanh-normalised weights (Zhou et al. 2016)
    BWN = "bwn"  # binary weights, per-channel scale mean |w| (Rastegari et al. 2016)
    TWN = "twn"  # ternary weights with threshold 0.7 mean |w| (Li et al. 2016)


class ActQuantizer(str, Enum):
    OBSERVER = "observer"  # range fixed by the calibration observer (PTQ default)
    LSQ = "lsq"  # learnable step size
    PACT = "pact"  # learnable clipping level alpha (Choi et al. 2018)
    BINARY = "binary"  # sign(x) * mean |x| (XNOR-Net inputs)


MIDRISE_MAX_BITS = 6  # odd codes up to 63: int8, and no 16-bit saturation on AVX2 (cpu.py)
# Weight quantisers whose bit-width is fixed by their definition.
FIXED_WEIGHT_BITS = {WeightQuantizer.BWN: 1, WeightQuantizer.TWN: 2}
DEFAULT_WEIGHT = {Method.PTQ: WeightQuantizer.MINMAX, Method.QAT: WeightQuantizer.LSQ}
DEFAULT_ACT = {Method.PTQ: ActQuantizer.OBSERVER, Method.QAT: ActQuantizer.LSQ}
# QAT starts learnable ranges from the MSE-optimal ones: min-max starts at 4 bits lose ~10 points more.
DEFAULT_OBSERVER = {Method.PTQ: ObserverName.MINMAX, Method.QAT: ObserverName.MSE}

# A short fine-tune from trained weights. BN is folded, so nothing renormalises the activations:
# on the CIFAR-10 JPEG copy ResNet-20 W4A4 diverged within an epoch with SGD at peak rates of
# 0.002-0.01; after 150 steps AdamW at 3e-4 reached 87.7 % (SGD at 0.001: 86.5 %; FP32 88.5 %).
# No weight decay: the learned step sizes and clipping levels must not shrink towards zero.
QAT_DEFAULTS: dict[str, Any] = {
    "epochs": 3, "lr": 3e-4, "optimizer": "adamw", "weight_decay": 0.0, "schedule": "cosine",
    "batch_size": 128, "grad_clip": 2.0,
}


class Advanced(BaseModel):
    """Rarely changed knobs."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    fold_bn: bool = Field(True, description="fold BatchNorm into the preceding conv/linear first")
    untie_shared: bool = Field(
        True, description="a conv shared by several calls, each with its own BatchNorm (detection heads across "
        "pyramid levels), gets a copy per call so each folds and runs int8; off: it stays shared and float"
    )
    equalize: bool = Field(False, description="cross-layer equalisation before quantising")
    bias_correction: bool = Field(False, description="correct the mean output shift of quantised weights")
    per_channel: bool = Field(True, description="per-output-channel weight scales")
    percentile: float = Field(99.99, gt=50, le=100, description="percentile observer: kept mass in %")
    histogram_bins: int = Field(2048, ge=64, le=16384)
    averaging_constant: float = Field(0.01, gt=0, le=1, description="moving-average observer update rate")
    calibration_batch_size: int = Field(64, ge=1)
    distill_weight: float = Field(0.0, ge=0, description="QAT: weight of KL to the float model's logits")
    qat_batchnorm: bool = Field(
        False, description="QAT: train each folded layer with its BatchNorm (batch statistics), folded again after"
    )
    reduce_range: bool | None = Field(
        None,
        description="8-bit weights on the 7-bit grid [-63, 63]: ONNX Runtime's int8 kernels on x86 CPUs without "
        "VNNI saturate 16-bit sums of 8-bit weights (quantization/cpu.py); None: on exactly when this CPU lacks VNNI",
    )
    latency_fallback: bool = Field(
        False, description="also keep in float the convolutions whose int8 kernel runs slower than float on this CPU "
        "(timed per layer at PyTorch's thread count, kept only when the whole int8 graph is faster; quantization/fallback.py)",
    )
    keep_calibrated: bool = Field(
        True, description="QAT: return the calibrated (PTQ) model when fine-tuning lowers validation top-1"
    )


class ProgressiveStage(BaseModel):
    """One QAT run before the final one (progressive quantisation, quantization/progressive.py).
    Written as a dict, as its bit-width alone (`4`) or as "BITS:EPOCHS" (`"4:3"`)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    bits: int = Field(ge=MIN_BITS, le=MAX_BITS)
    act_bits: int | None = Field(None, ge=MIN_BITS, le=MAX_BITS, description="None: same as bits")
    # LSQ by default: the mid-rise grid pays off only at 2 bits, where the last stage uses it
    weight: WeightQuantizer = WeightQuantizer.LSQ
    epochs: int | None = Field(None, ge=0, description="None: the final stage's train.epochs")

    @model_validator(mode="before")
    @classmethod
    def _shorthand(cls, value: Any) -> Any:
        if isinstance(value, bool):
            raise ValueError("expected a bit-width, 'BITS:EPOCHS' or a mapping")
        if isinstance(value, int):
            return {"bits": value}
        if isinstance(value, str):
            bits, _, epochs = value.partition(":")
            try:
                return {"bits": int(bits)} | ({"epochs": int(epochs)} if epochs else {})
            except ValueError:
                raise ValueError("expected BITS or BITS:EPOCHS (integers, e.g. '4:3')") from None
        return value

    @model_validator(mode="after")
    def _weight_fits(self) -> "ProgressiveStage":
        fixed = FIXED_WEIGHT_BITS.get(self.weight)
        if fixed is not None and self.bits != fixed:
            raise ValueError(f"weight quantizer '{self.weight.value}' is {fixed}-bit by definition")
        if self.weight is WeightQuantizer.LSQ_MIDRISE and self.bits > MIDRISE_MAX_BITS:
            raise ValueError(f"weight quantizer 'lsq_midrise' fits at most {MIDRISE_MAX_BITS} bits")
        return self


class QuantizeConfig(BaseModel):
    """What to quantise and how. `bits` is the weight (and default activation) bit-width;
    `first_last_bits` keeps the first conv and the last layer at that precision (None: same as
    the others); `keep_float` names layers (fnmatch patterns) to leave in floating point;
    `layer_bits` overrides weight bits per layer (what mixed precision fills in)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    method: Method = Method.PTQ
    bits: int = Field(8, ge=MIN_BITS, le=MAX_BITS)
    act_bits: int | None = Field(None, ge=MIN_BITS, le=MAX_BITS, description="None: same as bits (8 for bwn/twn)")
    observer: ObserverName | None = Field(None, description="None: minmax for ptq, mse for qat (initial ranges)")
    weight: WeightQuantizer | None = Field(None, description="None: minmax for ptq, lsq for qat")
    activation: ActQuantizer | None = Field(None, description="None: observer for ptq, lsq for qat")
    first_last_bits: int | None = Field(8, ge=MIN_BITS, le=MAX_BITS)
    residual_bits: int | None = Field(
        8, ge=MIN_BITS, le=MAX_BITS,
        description="bits of the tensors entering residual sums (None: act_bits); 8 keeps the shortcut path in high "
        "precision as published low-bit ResNets do (LSQ, APoT quantise only conv/linear inputs), and int8 on ONNX Runtime",
    )
    keep_float: tuple[str, ...] = ()
    layer_bits: dict[str, int] = Field(default_factory=dict)
    calibration_size: int = Field(512, ge=1, description="images used to calibrate")
    train: TrainConfig | None = Field(None, description="QAT fine-tuning options (training engine)")
    progressive: tuple[ProgressiveStage, ...] = Field(
        (), description="QAT first at these higher bit-widths, each run starting from the last one's latent weights "
        "(Zhuang et al. 2018), every run distilling from the float model when advanced.distill_weight > 0; "
        "e.g. bits 2 with progressive [4]",
    )
    advanced: Advanced = Field(default_factory=Advanced)

    def __init__(self, **options: Any) -> None:
        try:
            super().__init__(**options)
        except ValidationError as exc:
            raise ConfigError(f"invalid QuantizeConfig: {format_errors(exc, type(self))}") from None

    @field_validator("bits", "first_last_bits", mode="before")
    @classmethod
    def _bits_type(cls, value: Any) -> Any:
        if isinstance(value, bool) or (value is not None and not isinstance(value, int)):
            raise ValueError(f"a bit-width must be an integer from {MIN_BITS} to {MAX_BITS}")
        return value

    @field_validator("layer_bits")
    @classmethod
    def _layer_bits(cls, value: dict[str, int]) -> dict[str, int]:
        bad = {k: v for k, v in value.items() if not MIN_BITS <= v <= MAX_BITS}
        if bad:
            raise ValueError(f"bit-widths must be {MIN_BITS}..{MAX_BITS}; got {bad}")
        return value

    @model_validator(mode="after")
    def _resolve(self) -> "QuantizeConfig":
        weight = self.weight or DEFAULT_WEIGHT[self.method]
        activation = self.activation or DEFAULT_ACT[self.method]
        fixed = FIXED_WEIGHT_BITS.get(weight)
        if fixed is not None and "bits" in self.model_fields_set and self.bits != fixed:
            raise ValueError(f"bits: weight quantizer '{weight.value}' is {fixed}-bit by definition, got bits={self.bits}")
        if self.method is Method.PTQ and weight in (WeightQuantizer.LSQ, WeightQuantizer.LSQ_MIDRISE, WeightQuantizer.DOREFA):
            raise ValueError(f"weight: '{weight.value}' is a training-time quantizer; use method 'qat'")
        if weight is WeightQuantizer.LSQ_MIDRISE:
            wide = {"bits": self.bits} if self.bits > MIDRISE_MAX_BITS else {}
            wide |= {f"layer_bits[{k!r}]": v for k, v in self.layer_bits.items() if v > MIDRISE_MAX_BITS}
            if wide:
                field, value = next(iter(wide.items()))
                raise ValueError(f"{field}: weight quantizer 'lsq_midrise' has odd codes up to 2^bits - 1, so at most "
                                 f"{MIDRISE_MAX_BITS} bits fit int8 unsaturated; got {value}")
        if self.method is Method.PTQ and activation not in (ActQuantizer.OBSERVER, ActQuantizer.BINARY):
            raise ValueError(f"activation: '{activation.value}' learns its range; use method 'qat'")
        if self.progressive:
            ladder = [stage.bits for stage in self.progressive]
            if self.method is not Method.QAT:
                raise ValueError("progressive: its stages are QAT runs; use method 'qat'")
            if any(high <= low for high, low in zip(ladder, [*ladder[1:], fixed or self.bits])):
                raise ValueError(f"progressive: each stage needs more bits than the next and than bits={fixed or self.bits}, "
                                 f"got {ladder}")
        act_bits = self.act_bits or (8 if fixed is not None else self.bits)
        if activation is ActQuantizer.BINARY:
            act_bits = 1
        object.__setattr__(self, "observer", self.observer or DEFAULT_OBSERVER[self.method])
        object.__setattr__(self, "weight", weight)
        object.__setattr__(self, "activation", activation)
        object.__setattr__(self, "bits", fixed or self.bits)
        object.__setattr__(self, "act_bits", act_bits)
        return self

    def stage(self, stage: ProgressiveStage) -> "QuantizeConfig":
        """The config of one progressive stage: this one at the stage's bit-widths, weight quantiser
        and epochs. Per-layer bit-widths and the latency fallback are the final model's alone."""
        options = self.model_dump(exclude={"progressive", "layer_bits", "train", "bits", "act_bits", "weight"})
        options["advanced"]["latency_fallback"] = False
        if self.train is not None or stage.epochs is not None:  # QAT_DEFAULTS: what QAT trains with when train is None
            train = self.train.model_dump() if self.train is not None else dict(QAT_DEFAULTS)
            options["train"] = train | ({"epochs": stage.epochs} if stage.epochs is not None else {})
        return QuantizeConfig(**options, bits=stage.bits, act_bits=stage.act_bits or stage.bits, weight=stage.weight)

    @classmethod
    def coerce(cls, config: "QuantizeConfig | dict[str, Any] | None", **overrides: Any) -> "QuantizeConfig":
        """A config from itself, a dict (a recipe section) or None, with keyword overrides."""
        if isinstance(config, cls):
            return cls(**{**config.model_dump(exclude_unset=True), **overrides}) if overrides else config
        if config is None or isinstance(config, dict):
            return cls(**{**(config or {}), **overrides})
        raise ConfigError(f"config: expected a QuantizeConfig or a dict, got {type(config).__name__}")
