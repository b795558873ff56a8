"""Typed options of `deepshrink.decompose`. Built once at the edge; a bad value raises ConfigError
naming the field, so the rest of the family trusts what it gets.

The rank rule is one of four types (fixed ranks, energy threshold, VBMF, params/MACs ratio) and
`ranks.select_ranks` dispatches on that type."""

from __future__ import annotations

from enum import Enum
from typing import Union

from pydantic import BaseModel, ConfigDict, Field, field_validator

from deepshrink.configs import StrictConfig


class Method(str, Enum):
    """How convolutions are factorised (linear layers always use truncated SVD)."""

    TUCKER = "tucker"  # Tucker-2: 1x1 -> kxk core -> 1x1 (Kim et al. 2016)
    CP = "cp"  # pointwise -> depthwise kx1 -> depthwise 1xk -> pointwise (Lebedev et al. 2015)
    SVD = "svd"  # channel SVD: kxk with R outputs -> 1x1 (Zhang et al. 2015, AIMET weight SVD)
    SPATIAL = "spatial"  # kx1 -> 1xk (Jaderberg et al. 2014, scheme 2)


class Budget(str, Enum):
    PARAMS = "params"
    MACS = "macs"


class Allocation(str, Enum):
    UNIFORM = "uniform"  # every layer keeps the same fraction of its cost
    SENSITIVITY = "sensitivity"  # measured output error per layer decides who keeps more


_Options = StrictConfig


class FixedRanks(_Options):
    """Explicit ranks by layer name: an int, or [r_out, r_in] for Tucker (an int means both)."""

    ranks: dict[str, int | tuple[int, int]]

    @field_validator("ranks")
    @classmethod
    def _positive(cls, ranks: dict[str, int | tuple[int, int]]) -> dict[str, int | tuple[int, int]]:
        if not ranks:
            raise ValueError("give at least one layer")
        for name, rank in ranks.items():
            values = rank if isinstance(rank, tuple) else (rank,)
            if min(values) < 1:
                raise ValueError(f"layer '{name}': ranks must be >= 1, got {rank}")
        return ranks


class EnergyRule(_Options):
    """Smallest rank keeping this fraction of the squared singular values of each matricisation."""

    energy: float = Field(gt=0, le=1)


class VBMFRule(_Options):
    """Ranks from analytic empirical variational Bayesian matrix factorisation (Nakajima et al. 2013)."""


class RatioRule(_Options):
    """Make the whole model `ratio` times smaller in params (or MACs), spread over the layers."""

    ratio: float = Field(gt=1)
    budget: Budget = Budget.PARAMS
    allocation: Allocation = Allocation.UNIFORM


RankRule = Union[FixedRanks, EnergyRule, VBMFRule, RatioRule]


class Advanced(_Options):
    """Rarely changed solver and sensitivity knobs."""

    tucker_iterations: int = Field(10, ge=0, description="HOOI sweeps after the HOSVD start (0: plain HOSVD)")
    cp_iterations: int = Field(100, ge=1, description="ALS sweeps of tensorly.parafac")
    cp_tol: float = Field(1e-6, gt=0, description="ALS stops when the relative error changes less")
    seed: int = Field(0, ge=0, description="random start of CP columns beyond the SVD start")
    # Each grid point costs one forward pass of the calibration batch per layer.
    sensitivity_grid: tuple[float, ...] = Field(
        (0.05, 0.1, 0.2, 0.3, 0.45, 0.65), description="cost fractions tried per layer"
    )
    calibration_batch: int = Field(64, ge=1, description="images used to measure sensitivity")

    @field_validator("sensitivity_grid")
    @classmethod
    def _fractions(cls, grid: tuple[float, ...]) -> tuple[float, ...]:
        if not grid or any(not 0 < f <= 1 for f in grid):
            raise ValueError(f"fractions must lie in (0, 1], got {list(grid)}")
        return tuple(sorted(set(grid)))


class DecomposeConfig(_Options):
    """Everything `decompose` needs. `exclude=None` protects the first convolution and the last
    linear layer (the classifier); `exclude=[]` decomposes every layer it can."""

    method: Method = Method.TUCKER
    rule: RankRule
    exclude: tuple[str, ...] | None = Field(None, description="layer names or fnmatch patterns to keep")
    advanced: Advanced = Field(default_factory=Advanced)


class LayerPlan(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str
    method: Method
    ranks: tuple[int, ...]


class DecompositionPlan(BaseModel):
    """The replayable record of a decomposition: which layer became what, at which ranks."""

    model_config = ConfigDict(extra="forbid")

    method: Method
    layers: list[LayerPlan]
