"""Low-rank decomposition of convolutions (Tucker-2, CP, channel SVD, spatial separable) and linear
layers (truncated SVD), with rank selection by energy, VBMF or a params/MACs budget, and recovery
by fine-tuning with distillation from the original model (`deepshrink.lowrank.finetune`).

Importing this package registers the "decompose" model transform."""

from typing import Any

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
    "finetune",
    "recovery_config",
    "replay",
]


def __getattr__(name: str) -> Any:
    # Fine-tuning pulls in the training engine and distillation: only load them when asked.
    if name in ("finetune", "recovery_config"):
        from deepshrink.lowrank import finetune as module

        return getattr(module, name)
    raise AttributeError(f"module 'deepshrink.lowrank' has no attribute '{name}'")
