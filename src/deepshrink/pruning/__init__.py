"""Structured pruning (graph-aware, physically removing channels, verified) and unstructured
pruning (magnitude, N:M, gradual schedules), depth pruning (whole residual branches, `depth`), with
their training callbacks and sensitivity analysis.

Layers, as in Torch-Pruning: per-layer ops (layer_ops, weighted_ops, functional_ops, shape_ops) ->
dependency graph and coupled groups (graph) -> importance (importance, CRITERIA) -> policy ->
plan (plan: JSON, replayable as the "prune" transform) -> verified surgery (verify)."""

from deepshrink.pruning.api import PruneResult, prune
from deepshrink.pruning.callbacks import MaskHolder, SlimmingRegularizer, SoftFilterPruning
from deepshrink.pruning.config import (
    Advanced,
    Budget,
    Iterative,
    Metric,
    OneShot,
    Policy,
    PruneConfig,
    Scope,
    UnstructuredConfig,
)
from deepshrink.pruning.depth import DepthResult, drop_branches, find_branches
from deepshrink.pruning.functional_ops import register_op
from deepshrink.pruning.graph import DependencyGraph, Group, build_graph
from deepshrink.pruning.importance import CRITERIA, ScoringContext
from deepshrink.pruning.layer_ops import LayerOp, register_layer
from deepshrink.pruning.plan import apply_plan, compose_plans, make_plan
from deepshrink.pruning.selection import LayerSelection
from deepshrink.pruning.sensitivity import (
    Sensitivity,
    allocate_ratios,
    plot_sensitivity,
    propose_ratios,
    sensitivity,
    sensitivity_config,
    validation_score,
)
from deepshrink.pruning.shape_ops import register_channel_pad
from deepshrink.pruning.unstructured import GradualPruning, SparsityResult, sparsify, sparsity_masks, storage_report
from deepshrink.pruning.verify import verify_surgery

__all__ = [
    "CRITERIA",
    "apply_plan",
    "build_graph",
    "compose_plans",
    "drop_branches",
    "find_branches",
    "make_plan",
    "plot_sensitivity",
    "propose_ratios",
    "allocate_ratios",
    "sensitivity_config",
    "prune",
    "register_channel_pad",
    "register_layer",
    "register_op",
    "sensitivity",
    "sparsify",
    "sparsity_masks",
    "storage_report",
    "validation_score",
    "verify_surgery",
    "Advanced",
    "DepthResult",
    "Budget",
    "DependencyGraph",
    "GradualPruning",
    "Group",
    "Iterative",
    "LayerOp",
    "LayerSelection",
    "MaskHolder",
    "Metric",
    "OneShot",
    "Policy",
    "PruneConfig",
    "PruneResult",
    "Scope",
    "ScoringContext",
    "Sensitivity",
    "SlimmingRegularizer",
    "SoftFilterPruning",
    "SparsityResult",
    "UnstructuredConfig",
]
