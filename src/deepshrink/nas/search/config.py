"""Typed options of `search`, validated when built. `SearchConfig` is also the options model of the
pipeline's `search` step, so a recipe section maps onto it field by field.

A budget is a metric and the fraction of the unpruned model's value to keep: `macs:0.5` keeps half
the MACs, `latency:2x` asks for half the latency measured on the chosen runtime."""

from __future__ import annotations

import re
from enum import Enum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from deepshrink.errors import ConfigError
from deepshrink.pruning import LayerSelection, PruneConfig
from deepshrink.training import TrainConfig
from deepshrink.training.config import format_errors

DEFAULT_RATIOS = (0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8)


class Metric(str, Enum):
    MACS = "macs"
    PARAMS = "params"
    BYTES = "bytes"  # FP32 state dict as safetensors
    LATENCY = "latency"  # measured on `SearchConfig.latency.runtime`


class Runtime(str, Enum):
    """ONNX Runtime with one execution provider; `ort` is the CPU build every install has."""

    ORT = "ort"
    ORT_CUDA = "ort-cuda"
    ORT_TENSORRT = "ort-tensorrt"
    ORT_OPENVINO = "ort-openvino"


PROVIDERS = {
    Runtime.ORT: "CPUExecutionProvider",
    Runtime.ORT_CUDA: "CUDAExecutionProvider",
    Runtime.ORT_TENSORRT: "TensorrtExecutionProvider",
    Runtime.ORT_OPENVINO: "OpenVINOExecutionProvider",
}


def installed_providers() -> list[str]:
    """Execution providers of the installed ONNX Runtime ([] when it is not installed)."""
    try:
        import onnxruntime
    except ImportError:
        return []
    return list(onnxruntime.get_available_providers())


def runtime_problem(runtime: Runtime) -> str | None:
    """Why `runtime` cannot be timed here, or None when it can."""
    installed = installed_providers()
    if PROVIDERS[runtime] in installed:
        return None
    if not installed:
        return f"latency runtime '{runtime.value}' needs onnxruntime, which is not installed"
    usable = [r.value for r, p in PROVIDERS.items() if p in installed]
    return (f"latency runtime '{runtime.value}' needs ONNX Runtime's {PROVIDERS[runtime]}, which is not installed "
            f"here (installed providers: {', '.join(installed)}; usable runtimes: {', '.join(usable)})")


_TARGET = re.compile(r"^\s*(?P<metric>[a-z]+)\s*:\s*(?P<value>[0-9.]+)\s*(?P<x>x?)\s*$")


class Budget(BaseModel):
    """Keep at most `keep` of the unpruned model's `metric`. Also accepts the string forms
    "macs:0.5" (a fraction) and "latency:2x" (a factor: keep 1/2)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    metric: Metric = Metric.MACS
    keep: float = Field(default=0.5, gt=0.0, le=1.0, description="fraction of the unpruned model's value")

    @model_validator(mode="before")
    @classmethod
    def _from_text(cls, value: Any) -> Any:
        if not isinstance(value, str):
            return value
        match = _TARGET.match(value.lower())
        allowed = ", ".join(m.value for m in Metric)
        if match is None or match["metric"] not in {m.value for m in Metric}:
            raise ValueError(f"expected METRIC:FRACTION or METRIC:FACTORx with METRIC one of {allowed}, "
                             "e.g. macs:0.5 or latency:2x")
        number = float(match["value"])
        if match["x"]:
            if number < 1.0:
                raise ValueError("a factor such as 2x must be at least 1x")
            number = 1.0 / number
        return {"metric": match["metric"], "keep": number}

    def describe(self) -> str:
        gain = "faster" if self.metric is Metric.LATENCY else "smaller"
        return f"{self.metric.value} <= {self.keep:.4g} of the unpruned model ({1 / self.keep:.3g}x {gain})"


class LatencyConfig(BaseModel):
    """How latency is measured: runtime, batch size, threads, and the time spent per measurement."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    runtime: Runtime = Runtime.ORT
    batch_size: int = Field(default=1, ge=1)
    threads: int = Field(default=1, ge=1, description="intra-op threads; 1 is stable on shared machines")
    entry_seconds: float = Field(default=0.05, gt=0, le=5, description="timing budget of one table entry")
    model_seconds: float = Field(default=0.5, gt=0, le=30, description="timing budget of one whole model")
    # Other processes only ever slow a run down: on a shared 2-core machine the median of repeated
    # ResNet-56 runs drifted 2.5x between measurements while the 10th percentile moved under 10 %.
    quantile: float = Field(default=0.1, ge=0.0, le=0.5, description="quantile of the timed runs reported")
    calibration_models: int = Field(default=5, ge=2, le=20, description="whole models measured to fit the table")
    verify_top: int = Field(default=5, ge=1, le=50, description="best candidates measured whole at the end")


class ProxyConfig(BaseModel):
    """The accuracy proxy: BatchNorm statistics re-estimated on a few training batches, then top-1
    on a few validation batches (both fixed for the whole search)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    calibration_batches: int = Field(default=4, ge=1)
    val_batches: int = Field(default=4, ge=1)
    batch_size: int = Field(default=64, ge=1)


class EvolutionConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    elite: int = Field(default=2, ge=0, description="best candidates copied unchanged to the next generation")
    tournament: int = Field(default=3, ge=1, description="candidates drawn per parent selection")
    crossover: float = Field(default=0.9, ge=0, le=1, description="probability a child mixes two parents")
    mutation: float = Field(default=0.1, ge=0, le=1, description="probability each gene moves one level")


class SearchConfig(BaseModel):
    """Evolutionary search over per-group pruning ratios under a budget (see `search`)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    budget: Budget = Budget()
    limits: tuple[Budget, ...] = Field(default=(), description="further limits every candidate must meet besides "
                                       "the budget, on the exact metrics (macs, params, bytes), e.g. macs:0.5 "
                                       "beside a latency budget")
    ratios: tuple[float, ...] = Field(default=DEFAULT_RATIOS, description="pruning ratios each group may take")
    population: int = Field(default=16, ge=2)
    generations: int = Field(default=10, ge=0, description="generations after the initial population")
    seed: int = Field(default=0, ge=0)
    criterion: str = "fpgm"
    round_to: int = Field(default=8, ge=1, description="kept channels per group rounded to a multiple of this")
    protect: LayerSelection = LayerSelection()
    protect_ends: bool = True
    latency: LatencyConfig = LatencyConfig()
    proxy: ProxyConfig = ProxyConfig()
    evolution: EvolutionConfig = EvolutionConfig()
    finetune: TrainConfig | None = Field(default=None, description="fine-tune the chosen model; None: skip")
    progress: bool = True

    def __init__(self, **options: Any) -> None:
        try:
            super().__init__(**options)
        except ValidationError as exc:
            raise ConfigError(f"invalid SearchConfig: {format_errors(exc, SearchConfig)}") from None

    @field_validator("ratios")
    @classmethod
    def _ratios(cls, value: tuple[float, ...]) -> tuple[float, ...]:
        if any(not 0.0 <= r < 1.0 for r in value):
            raise ValueError("every ratio must lie in [0, 1)")
        ordered = tuple(sorted(set(value)))
        if len(ordered) < 2 or ordered[0] != 0.0:
            raise ValueError("need 0.0 and at least one larger ratio")
        return ordered

    @field_validator("criterion")
    @classmethod
    def _criterion(cls, value: str) -> str:
        from deepshrink.pruning import CRITERIA

        CRITERIA.get(value)  # raises UnknownNameError listing close matches
        return value

    @model_validator(mode="after")
    def _check(self) -> "SearchConfig":
        if self.evolution.elite >= self.population:
            raise ValueError(f"evolution.elite ({self.evolution.elite}) must be below population ({self.population})")
        metrics = [self.budget.metric, *(limit.metric for limit in self.limits)]
        if Metric.LATENCY in metrics[1:]:
            raise ValueError("limits: latency can only be the budget itself (limits are exact metrics: macs, "
                             "params, bytes)")
        if len(set(metrics)) < len(metrics):
            raise ValueError(f"limits: each metric at most once, the budget's ({self.budget.metric.value}) included")
        if self.budget.metric is Metric.LATENCY:
            problem = runtime_problem(self.latency.runtime)
            if problem is not None:
                raise ValueError(f"latency.runtime: {problem}")
        return self

    @classmethod
    def coerce(cls, config: "SearchConfig | dict[str, Any] | None", **overrides: Any) -> "SearchConfig":
        """From an instance, a dict (a recipe section) or None, with keyword overrides on top."""
        if isinstance(config, cls):
            data = config.model_dump(exclude_unset=True)
        elif config is None or isinstance(config, dict):
            data = dict(config or {})
        else:
            raise ConfigError(f"search config must be a SearchConfig or a dict, got {type(config).__name__}")
        data.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**data)

    def prune_config(self, ratios: dict[str, float], *, verify: bool = True) -> PruneConfig:
        """The PruneConfig that applies a searched plan: groups not named keep every channel."""
        return PruneConfig(criterion=self.criterion, ratio=0.0, ratios=ratios, round_to=self.round_to,
                           protect=self.protect, protect_ends=self.protect_ends, verify=verify)

    def fingerprint(self) -> dict[str, Any]:
        """The options that decide the search trajectory (a resumed search must match them)."""
        data = self.model_dump(mode="json", exclude={"generations", "progress", "finetune"})
        data["latency"].pop("verify_top")
        if not data["limits"]:
            del data["limits"]  # states saved before limits existed still resume
        return data
