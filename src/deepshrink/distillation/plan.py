"""From a DistillConfig and concrete models to a ready DistillObjective.

One probe forward per model records feature shapes, so every adapter exists before the engine
builds its optimiser (lazy modules would be missed by it). Checks that need the models happen here:
class counts, module paths, tap pairing."""

from __future__ import annotations

from collections.abc import Sequence

import torch.nn as nn

from deepshrink.distillation.config import DistillConfig, reads_features
from deepshrink.distillation.hooks import resolve_module, split_tap, unwrap
from deepshrink.distillation.losses import LOSSES, DistillLoss, KDLoss
from deepshrink.distillation.objective import DistillObjective, TeacherLogitCache, Term
from deepshrink.distillation.taps import ModelLayout, TapKind, default_taps, probe_layout, tap_shape
from deepshrink.errors import ConfigError


def build_objective(
    student: nn.Module,
    teachers: Sequence[nn.Module],
    teacher_weights: Sequence[float],
    config: DistillConfig,
    *,
    input_size: tuple[int, ...],
    num_classes: int | None = None,
) -> DistillObjective:
    """The objective for `config` with `teachers` weighted by `teacher_weights` (already normalised)."""
    student = unwrap(student)
    s_layout = probe_layout(student, input_size)
    classes = s_layout.logits[0]
    if num_classes is not None and classes != num_classes:
        raise ConfigError(f"student ({type(student).__name__}) predicts {classes} classes, the data has {num_classes}")
    t_layouts = []
    for index, teacher in enumerate(teachers):
        layout = probe_layout(unwrap(teacher), input_size)
        if layout.logits[0] != classes:
            raise ConfigError(
                f"teacher {index} ({type(teacher).__name__}) predicts {layout.logits[0]} classes, "
                f"the student ({type(student).__name__}) predicts {classes}"
            )
        t_layouts.append(layout)

    terms: list[Term] = []
    losses: list[DistillLoss] = []
    for spec in config.losses:
        cls = LOSSES.get(spec.name)
        for index, (teacher, t_layout) in enumerate(zip(teachers, t_layouts)):
            weight = teacher_weights[index] * _loss_weight(spec, cls, config)
            if weight == 0:  # nothing to learn from this pair: skip its forward passes too
                continue
            if not reads_features(spec):
                loss = _logits_loss(cls, spec.options, config)
                s_taps: tuple[str, ...] = ()
                t_taps: tuple[str, ...] = ()
            else:
                s_taps = _taps(student, s_layout, spec.student or spec.teacher, cls.taps, "student")
                t_taps = _taps(teacher, t_layout, spec.teacher or spec.student, cls.taps, f"teacher {index}")
                s_shapes = [tap_shape(s_layout, tap) for tap in s_taps]
                t_shapes = [tap_shape(t_layout, tap) for tap in t_taps]
                loss = cls.build(s_shapes, t_shapes, **spec.options)
            terms.append(Term(spec.name, index, weight, s_taps, t_taps))
            losses.append(loss)
    weights = config.weights
    alpha = weights.alpha if hasattr(weights, "alpha") else 0.0
    if not terms and not alpha:
        raise ConfigError("distill: every loss has weight 0 and alpha is 0, so there is nothing to train on")
    cache = TeacherLogitCache() if config.cache_teacher_logits else None
    return DistillObjective(
        teachers, terms, losses, alpha=alpha, label_smoothing=config.train.label_smoothing, cache=cache
    )


def _loss_weight(spec, cls: type[DistillLoss], config: DistillConfig) -> float:
    if issubclass(cls, KDLoss):
        if not hasattr(config.weights, "beta"):
            raise ConfigError(
                "weights: 'auto' must be resolved (deepshrink.distill does it) before building the objective"
            )
        return config.weights.beta
    return cls.default_weight if spec.weight is None else spec.weight


def _logits_loss(cls: type[DistillLoss], options: dict, config: DistillConfig) -> DistillLoss:
    """A response loss; kd gets the shared temperature and only its soft term (alpha is added once)."""
    if issubclass(cls, KDLoss):
        return cls.build([()], [()], temperature=config.temperature, alpha=0.0, beta=1.0, **options)
    return cls.build([()], [()], **options)


def _taps(model: nn.Module, layout: ModelLayout, given: Sequence[str], kind: TapKind, role: str) -> tuple[str, ...]:
    if not given:
        return tuple(default_taps(layout, kind, f"{role} ({type(model).__name__})"))
    for tap in given:
        try:
            resolve_module(model, split_tap(tap)[0])
        except ConfigError as exc:  # add which model; the message already lists the closest names
            raise ConfigError(f"{role}: {exc}") from None
    return tuple(given)
