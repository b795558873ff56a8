"""Low-rank decomposition of convolutions (Tucker-2, CP, channel SVD, spatial separable) and linear
layers (truncated SVD), with rank selection by energy, VBMF or a params/MACs budget, and recovery
by fine-tuning with distillation from the original model (`deepshrink.lowrank.finetune.finetune`).

Importing this package registers the "decompose" model transform."""

from deepshrink.lowrank.api import build_config, decompose, replay
from deepshrink.lowrank.config import (
    Advanced,
    Allocation,
    Budget,
    DecomposeConfig,
    DecompositionPlan,
    EnergyRule,
    FixedRanks,
    LayerPlan,
    Method,
    RatioRule,
    VBMFRule,
)
from deepshrink.lowrank.methods import CONV_DECOMPOSERS, Decomposer, decomposer_for

__all__ = [
    "CONV_DECOMPOSERS",
    "Advanced",
    "Allocation",
    "Budget",
    "DecomposeConfig",
    "DecompositionPlan",
    "Decomposer",
    "EnergyRule",
    "FixedRanks",
    "LayerPlan",
    "Method",
    "RatioRule",
    "VBMFRule",
    "build_config",
    "decompose",
    "decomposer_for",
    "replay",
]
