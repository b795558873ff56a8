"""Knowledge distillation: response, feature and relation losses as registered nn.Modules, a
forward-hook manager naming features by module path, `distill` on the training engine (multiple
weighted teachers, self-distillation, cached teacher logits), and seed 001's interpretable weight
allocation (eq. 7) with the alpha sweep of its Table 2."""

from deepshrink.distillation import losses
from deepshrink.distillation.api import DistillResult, distill
from deepshrink.distillation.config import (
    RECOVERY_KD,
    AutoWeights,
    DistillConfig,
    KDWeights,
    LossSpec,
    Split,
    WeightMode,
)
from deepshrink.distillation.hooks import FeatureHooks
from deepshrink.distillation.losses import (
    LOSSES,
    ATLoss,
    CRDLoss,
    DistillLoss,
    FitNetLoss,
    FSPLoss,
    KDLoss,
    MimicLoss,
    PKTLoss,
    RKDLoss,
    SPLoss,
    build_loss,
)
from deepshrink.distillation.objective import DistillObjective, TeacherLogitCache
from deepshrink.distillation.plan import build_objective
from deepshrink.distillation.taps import TapKind
from deepshrink.distillation.weighting import (
    DEFAULT_ALPHAS,
    SweepPoint,
    WeightAllocation,
    allocate_weights,
    eq7_weights,
    plot_sweep,
    sweep_alpha,
)

__all__ = [
    "RECOVERY_KD",
    "ATLoss",
    "CRDLoss",
    "AutoWeights",
    "DEFAULT_ALPHAS",
    "DistillConfig",
    "DistillLoss",
    "DistillObjective",
    "DistillResult",
    "FSPLoss",
    "FeatureHooks",
    "FitNetLoss",
    "MimicLoss",
    "KDLoss",
    "KDWeights",
    "LOSSES",
    "LossSpec",
    "PKTLoss",
    "RKDLoss",
    "SPLoss",
    "Split",
    "SweepPoint",
    "TapKind",
    "TeacherLogitCache",
    "WeightAllocation",
    "WeightMode",
    "allocate_weights",
    "build_loss",
    "build_objective",
    "distill",
    "eq7_weights",
    "losses",
    "plot_sweep",
    "sweep_alpha",
]
