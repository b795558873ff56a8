"""Seed 001's interpretable weight allocation (section 3, eq. 7) and the alpha sweep of its Table 2.

A probe student C is trained three times from the same initialisation, seed, data order and
budget: alone (eq. 2), distilled from the teacher A, and distilled from the second source B, both
with the same temperature and weights. I_A and I_B are C's top-1 gains in points. Each source's
weight is its share of the total gain: the teacher term gets beta = I_A / (I_A + I_B) and the
label term alpha = I_B / (I_A + I_B), reproducing the paper's worked example (I = 1.46 and 3.41
give 0.29 on the labels and 0.71 on the stronger DenseNet teacher, the best rows of Table 2).

A negative gain means that source hurt C: it counts as 0, so the other source takes all the
weight. When neither helps, the measurement says nothing and the probe weights are kept."""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn

from deepshrink.distillation.config import DistillConfig, KDWeights, LossSpec, Split
from deepshrink.errors import ConfigError

DEFAULT_ALPHAS = (1.0, 0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3, 0.2, 0.1)


@dataclass(frozen=True)
class WeightAllocation:
    baseline_top1: float  # C trained alone
    teacher_top1: float  # C distilled from A
    second_top1: float  # C distilled from B
    improvement_teacher: float  # I_A, top-1 points
    improvement_second: float  # I_B
    weights: KDWeights  # alpha on the labels, beta on the teacher
    rule: str  # how the shares were obtained
    split: str

    def as_dict(self) -> dict[str, Any]:
        record = asdict(self)
        record["weights"] = self.weights.model_dump()
        return record


def eq7_weights(improvement_teacher: float, improvement_second: float, fallback: KDWeights) -> tuple[KDWeights, str]:
    """(weights, rule): beta = I_A+ / (I_A+ + I_B+), alpha = I_B+ / (...), with x+ = max(x, 0)."""
    a, b = max(improvement_teacher, 0.0), max(improvement_second, 0.0)
    if a + b <= 0:
        return fallback, (
            f"neither source improved the probe (I_A={improvement_teacher:.3f}, I_B={improvement_second:.3f}); "
            f"kept the probe weights alpha={fallback.alpha}, beta={fallback.beta}"
        )
    rule = "eq. 7"
    if (a, b) != (improvement_teacher, improvement_second):
        rule += " with the negative improvement counted as 0"
    return KDWeights(alpha=b / (a + b), beta=a / (a + b)), rule


def allocate_weights(
    teachers: nn.Module | Sequence[nn.Module],
    second: nn.Module,
    data: Any,
    config: DistillConfig | dict[str, Any] | None = None,
    *,
    template: nn.Module | None = None,
    probe: nn.Module | None = None,
) -> WeightAllocation:
    """Measure I_A (from `teachers`) and I_B (from `second`) on a probe student and apply eq. 7.

    The probe is `probe` if given, else `config.auto.probe` from the zoo, else a freshly
    initialised model of `template`'s architecture (default: `second`'s)."""
    from deepshrink.distillation.api import distill
    from deepshrink.metrics.evaluation import resolve_data
    from deepshrink.training import train

    config = DistillConfig.coerce(config)
    auto, data = config.auto, resolve_data(data)
    train_config = config.train.model_copy(
        update={"epochs": auto.epochs, "limit_batches": auto.limit_batches or config.train.limit_batches}
    )
    probe_config = config.with_updates(losses=[LossSpec(name="kd")], weights=auto.probe_weights, train=train_config)
    second_config = probe_config.with_updates(teacher_weights=None)
    gains_a, gains_b, scores = [], [], []
    for repeat in range(auto.repeats):
        seeded = train_config.model_copy(update={"seed": train_config.seed + repeat})
        torch.manual_seed(seeded.seed)
        source = template if template is not None else second  # (a Module's truth value is unreliable)
        initial = probe if probe is not None else fresh_probe(source, data, auto.probe)
        base = train(copy.deepcopy(initial), data, seeded).model
        with_a = distill(copy.deepcopy(initial), teachers, data, probe_config.with_updates(train=seeded)).model
        with_b = distill(copy.deepcopy(initial), second, data, second_config.with_updates(train=seeded)).model
        top1 = [_top1(m, data, auto.split) for m in (base, with_a, with_b)]
        gains_a.append(top1[1] - top1[0])
        gains_b.append(top1[2] - top1[0])
        scores.append(top1)
    mean = [sum(s[i] for s in scores) / len(scores) for i in range(3)]
    i_a, i_b = sum(gains_a) / len(gains_a), sum(gains_b) / len(gains_b)
    weights, rule = eq7_weights(i_a, i_b, auto.probe_weights)
    return WeightAllocation(mean[0], mean[1], mean[2], i_a, i_b, weights, rule, auto.split.value)


def fresh_probe(template: nn.Module, data: Any, name: str | None = None) -> nn.Module:
    """A newly initialised probe: the zoo model `name`, or `template`'s architecture rebuilt from
    its spec (transforms replayed, so a pruned template gives a pruned probe), or a copy of
    `template` with every `reset_parameters` re-run when it has no spec."""
    from deepshrink.models import attach_spec, create_model, spec_of
    from deepshrink.models.spec import replay

    if name is not None:
        return create_model(
            name, num_classes=data.num_classes, input_size=tuple(data.input_size), mean=data.mean, std=data.std
        )
    spec = spec_of(template)
    if spec is not None:
        model = create_model(
            spec.arch,
            num_classes=spec.num_classes,
            input_size=spec.input_size,
            mean=spec.mean,
            std=spec.std,
            **spec.kwargs,
        )
        return attach_spec(replay(model, spec.transforms), spec)
    model = copy.deepcopy(template)
    for module in model.modules():
        if callable(getattr(module, "reset_parameters", None)):
            module.reset_parameters()
    return model


@dataclass(frozen=True)
class SweepPoint:
    alpha: float
    beta: float
    top1: float
    train_loss: float | None


def sweep_alpha(
    student: nn.Module,
    teachers: nn.Module | Sequence[nn.Module],
    data: Any,
    config: DistillConfig | dict[str, Any] | None = None,
    *,
    alphas: Sequence[float] = DEFAULT_ALPHAS,
    split: Split | str = Split.TEST,
) -> list[SweepPoint]:
    """Seed 001 Table 2: distil a copy of `student` once per alpha (beta = 1 - alpha) with the same
    seed and budget; alpha = 1 is the no-teacher baseline. `student` itself is not changed."""
    from deepshrink.distillation.api import distill
    from deepshrink.metrics.evaluation import resolve_data

    config, data = DistillConfig.coerce(config), resolve_data(data)
    split = Split(split) if not isinstance(split, Split) else split
    if not alphas:
        raise ConfigError("alphas: give at least one value in [0, 1]")
    for a in alphas:
        if not 0.0 <= a <= 1.0:
            raise ConfigError(f"alphas: {a} is outside [0, 1] (beta = 1 - alpha must be >= 0)")
    points = []
    for a in alphas:
        weights = KDWeights(alpha=float(a), beta=round(1.0 - float(a), 10))
        result = distill(copy.deepcopy(student), teachers, data, config.with_updates(weights=weights))
        last_loss = result.history[-1].get("train_loss") if result.history else None
        points.append(SweepPoint(weights.alpha, weights.beta, _top1(result.model, data, split), last_loss))
    return points


def plot_sweep(
    points: Sequence[SweepPoint],
    path: str | Path,
    *,
    allocation: WeightAllocation | None = None,
    title: str | None = None,
) -> Path:
    """Top-1 against alpha (as in Table 2, alpha = 1 first), with the eq. 7 choice marked."""
    import io

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from deepshrink.fileio import atomic_write_bytes

    if not points:
        raise ConfigError("plot_sweep: no sweep points to plot")
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot([p.alpha for p in points], [p.top1 for p in points], "o-", color="tab:blue", label="distilled")
    baseline = [p.top1 for p in points if p.alpha == 1.0]
    if baseline:
        ax.axhline(baseline[0], color="grey", ls=":", label="alpha = 1 (no teacher)")
    if allocation is not None:
        alpha = allocation.weights.alpha
        ax.axvline(alpha, color="tab:red", ls="--", label=f"eq. 7: alpha = {alpha:.2f}")
    ax.set_xlabel("alpha (weight of the label term; beta = 1 - alpha)")
    ax.set_ylabel("top-1 (%)")
    ax.invert_xaxis()
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    ax.set_title(title or "Knowledge distillation: accuracy against alpha")
    buffer = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buffer, format="png", dpi=110)
    plt.close(fig)
    return atomic_write_bytes(path, buffer.getvalue())


def _top1(model: nn.Module, data: Any, split: Split) -> float:
    from deepshrink.metrics import evaluate

    param = next(iter(model.parameters()), None)
    device = param.device if param is not None else torch.device("cpu")
    return float(evaluate(model, data, split=split.value, device=device)["top1"])
