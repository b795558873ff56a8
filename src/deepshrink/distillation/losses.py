"""Distillation losses: plain registered nn.Modules called as `loss(student, teacher, labels)`.

`student` / `teacher` are logits for response losses and a tensor or list of tensors (one per
tap) for feature and relation losses. Losses whose maths needs equal widths (FitNets, FSP) own
learnable 1x1 adapters, so a pruned student with fewer channels still learns from its teacher;
`build(student_shapes, teacher_shapes, **options)` sizes them from per-example shapes.

Default weights follow the CIFAR settings of Tian et al.'s benchmark (RepDistiller)."""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from typing import ClassVar

import torch
import torch.nn as nn
import torch.nn.functional as F

from deepshrink.distillation import primitives as P
from deepshrink.distillation.taps import TapKind
from deepshrink.errors import ConfigError
from deepshrink.registry import Registry

Shape = tuple[int, ...]
Features = torch.Tensor | Sequence[torch.Tensor]


class DistillLoss(nn.Module):
    """Base class. Subclasses set `taps` (where they look by default) and `default_weight`."""

    taps: ClassVar[TapKind] = TapKind.STAGES
    default_weight: ClassVar[float] = 1.0
    min_taps: ClassVar[int] = 1

    @classmethod
    def build(cls, student_shapes: Sequence[Shape], teacher_shapes: Sequence[Shape], **options) -> "DistillLoss":
        """Construct for features of the given per-example shapes (one per tap)."""
        _check_tap_counts(cls, student_shapes, teacher_shapes)
        return _construct(cls, **options)


LOSSES: Registry[type[DistillLoss]] = Registry("distillation loss")


def _check_tap_counts(cls: type, student_shapes: Sequence[Shape], teacher_shapes: Sequence[Shape]) -> None:
    if len(student_shapes) != len(teacher_shapes):
        raise ConfigError(
            f"{cls.__name__}: {len(student_shapes)} student taps but {len(teacher_shapes)} teacher taps; "
            "they pair up in order"
        )
    if len(student_shapes) < cls.min_taps:
        raise ConfigError(f"{cls.__name__}: needs at least {cls.min_taps} taps, got {len(student_shapes)}")


def _construct(cls: type, *args, **options) -> DistillLoss:
    accepted = [p for p in inspect.signature(cls.__init__).parameters if p != "self"][len(args):]
    unknown = sorted(set(options) - set(accepted))
    if unknown:
        raise ConfigError(f"{cls.__name__}: unknown option '{unknown[0]}' (accepted: {', '.join(accepted) or 'none'})")
    return cls(*args, **options)


def _as_list(features: Features) -> list[torch.Tensor]:
    return [features] if isinstance(features, torch.Tensor) else list(features)


def _pairs(student: Features, teacher: Features, name: str) -> list[tuple[torch.Tensor, torch.Tensor]]:
    s, t = _as_list(student), [f.detach() for f in _as_list(teacher)]  # never train the teacher
    if len(s) != len(t):
        raise ConfigError(f"{name}: got {len(s)} student features and {len(t)} teacher features")
    return list(zip(s, t))


@LOSSES.register("kd")
class KDLoss(DistillLoss):
    """Hinton et al. with seed 001 eqs. 1-3: L = alpha CE(y, p) + beta T^2 CE(q_T, p_T), where
    q_T, p_T are the teacher's and student's softmax-T outputs. T^2 keeps the soft term's gradient
    magnitude independent of T. In `distill` the label term is added once by the objective, so
    there the loss is built with alpha=0 and weighted by the recipe's beta."""

    taps = TapKind.LOGITS

    def __init__(self, temperature: float = 4.0, alpha: float = 0.1, beta: float = 0.9) -> None:
        super().__init__()
        if not temperature > 0:
            raise ConfigError(f"KDLoss: temperature must be > 0, got {temperature}")
        if alpha < 0 or beta < 0 or not alpha + beta > 0:
            raise ConfigError(
                f"KDLoss: alpha and beta must be >= 0 with a positive sum, got alpha={alpha}, beta={beta}"
            )
        self.temperature, self.alpha, self.beta = float(temperature), float(alpha), float(beta)

    def forward(
        self, student_logits: torch.Tensor, teacher_logits: torch.Tensor, labels: torch.Tensor | None = None
    ) -> torch.Tensor:
        if student_logits.shape != teacher_logits.shape:
            raise ConfigError(
                f"KDLoss: student logits {list(student_logits.shape)} and "
                f"teacher logits {list(teacher_logits.shape)} differ"
            )
        t = self.temperature
        soft = P.soft_cross_entropy(student_logits / t, P.softened(teacher_logits.detach(), t)) * (t * t)
        if self.alpha == 0:
            return self.beta * soft
        if labels is None:
            raise ConfigError("KDLoss: alpha > 0 weights the label term, so labels are required")
        return self.alpha * F.cross_entropy(student_logits, labels) + self.beta * soft


def _regressor(student: Shape, teacher: Shape) -> nn.Module:
    """FitNets' learnable regressor: 1x1 conv + BN for maps, a linear layer for vectors."""
    if len(student) == 3 and len(teacher) == 3:
        return nn.Sequential(nn.Conv2d(student[0], teacher[0], 1, bias=False), nn.BatchNorm2d(teacher[0]))
    if len(student) == 1 and len(teacher) == 1:
        return nn.Linear(student[0], teacher[0])
    raise ConfigError(
        f"FitNetLoss: cannot regress student features {list(student)} onto teacher features {list(teacher)}"
    )


@LOSSES.register("fitnet")
class FitNetLoss(DistillLoss):
    """Romero et al. hints: MSE between a learnable regression of the student feature and the
    teacher feature (resized to the teacher's resolution)."""

    taps = TapKind.MIDDLE_STAGE
    default_weight = 100.0

    def __init__(self, student_shapes: Sequence[Shape], teacher_shapes: Sequence[Shape]) -> None:
        super().__init__()
        self.regressors = nn.ModuleList(self._adapter(tuple(s), tuple(t)) for s, t in zip(student_shapes, teacher_shapes))

    @staticmethod
    def _adapter(student: Shape, teacher: Shape) -> nn.Module:
        return _regressor(student, teacher)

    @staticmethod
    def _error(hint: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
        return F.mse_loss(hint, teacher)

    @classmethod
    def build(cls, student_shapes, teacher_shapes, **options):
        _check_tap_counts(cls, student_shapes, teacher_shapes)
        return _construct(cls, student_shapes, teacher_shapes, **options)

    def forward(self, student: Features, teacher: Features, labels: torch.Tensor | None = None) -> torch.Tensor:
        name = type(self).__name__
        pairs = _pairs(student, teacher, name)
        if len(pairs) != len(self.regressors):
            raise ConfigError(f"{name}: built for {len(self.regressors)} taps, called with {len(pairs)}")
        total = 0.0
        for regressor, (s, t) in zip(self.regressors, pairs):
            hint = regressor(s)
            if hint.dim() == 4:
                hint = P.match_spatial(hint, t.shape[-2:])
            total = total + self._error(hint, t)
        return total


@LOSSES.register("mimic")
class MimicLoss(FitNetLoss):
    """Feature mimicking (Li et al. 2017) at every stage output: squared error relative to the
    teacher feature's energy, so one weight suits every depth. Taps of equal width are compared
    directly, nothing learnt beside the student: the case of decomposed models and of pruned ones
    whose stage outputs were kept, where the student should reproduce the original features
    themselves. Unequal widths go through a 1x1 adapter as in FitNets."""

    taps = TapKind.STAGES
    default_weight = 1.0

    @staticmethod
    def _adapter(student: Shape, teacher: Shape) -> nn.Module:
        return nn.Identity() if student[:1] == teacher[:1] else _regressor(student, teacher)

    @staticmethod
    def _error(hint: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
        return (hint - teacher).pow(2).mean() / teacher.pow(2).mean().clamp_min(1e-12)


@LOSSES.register("at")
class ATLoss(DistillLoss):
    """Zagoruyko & Komodakis attention transfer: squared distance between normalised spatial
    attention maps, summed over taps. Channel counts may differ; resolutions are matched."""

    default_weight = 1000.0

    def __init__(self, p: float = 2.0) -> None:
        super().__init__()
        self.p = float(p)

    def forward(self, student: Features, teacher: Features, labels: torch.Tensor | None = None) -> torch.Tensor:
        total = 0.0
        for s, t in _pairs(student, teacher, "ATLoss"):
            s = P.match_spatial(s, t.shape[-2:])
            total = total + (P.attention_map(s, self.p) - P.attention_map(t, self.p)).pow(2).mean()
        return total


@LOSSES.register("sp")
class SPLoss(DistillLoss):
    """Tung & Mori similarity preserving: ||G_s - G_t||_F^2 / B^2 on batch similarity matrices,
    which are B x B whatever the widths."""

    taps = TapKind.LAST_STAGE
    default_weight = 3000.0

    def forward(self, student: Features, teacher: Features, labels: torch.Tensor | None = None) -> torch.Tensor:
        total = 0.0
        for s, t in _pairs(student, teacher, "SPLoss"):
            total = total + (P.similarity_matrix(s) - P.similarity_matrix(t)).pow(2).sum() / (len(s) ** 2)
        return total


@LOSSES.register("rkd")
class RKDLoss(DistillLoss):
    """Park et al. relational KD: Huber loss between distance potentials (normalised pairwise
    distances) and between angle potentials of the embeddings."""

    taps = TapKind.EMBEDDING

    def __init__(self, distance_weight: float = 25.0, angle_weight: float = 50.0) -> None:
        super().__init__()
        self.distance_weight, self.angle_weight = float(distance_weight), float(angle_weight)

    def forward(self, student: Features, teacher: Features, labels: torch.Tensor | None = None) -> torch.Tensor:
        total = 0.0
        for s, t in _pairs(student, teacher, "RKDLoss"):
            distance = F.smooth_l1_loss(P.normalised_distances(s), P.normalised_distances(t))
            angle = F.smooth_l1_loss(P.angle_potentials(s), P.angle_potentials(t))
            total = total + self.distance_weight * distance + self.angle_weight * angle
        return total


@LOSSES.register("fsp")
class FSPLoss(DistillLoss):
    """Yim et al. (seed 000 section 5.3): match the FSP (Gram) matrices between consecutive taps.
    A student tap narrower than the teacher's goes through a learnable 1x1 adapter first."""

    default_weight = 50.0
    min_taps = 2

    def __init__(self, student_channels: Sequence[int], teacher_channels: Sequence[int]) -> None:
        super().__init__()
        self.adapters = nn.ModuleList(
            nn.Identity() if s == t else nn.Conv2d(s, t, 1, bias=False)
            for s, t in zip(student_channels, teacher_channels)
        )

    @classmethod
    def build(cls, student_shapes, teacher_shapes, **options):
        _check_tap_counts(cls, student_shapes, teacher_shapes)
        for s, t in zip(student_shapes, teacher_shapes):
            if len(s) != 3 or len(t) != 3:
                raise ConfigError(f"FSPLoss: needs [C, H, W] feature maps, got student {list(s)} and teacher {list(t)}")
        return _construct(cls, [s[0] for s in student_shapes], [t[0] for t in teacher_shapes], **options)

    def forward(self, student: Features, teacher: Features, labels: torch.Tensor | None = None) -> torch.Tensor:
        pairs = _pairs(student, teacher, "FSPLoss")
        if len(pairs) < 2 or len(pairs) != len(self.adapters):
            raise ConfigError(f"FSPLoss: built for {len(self.adapters)} taps (at least 2), called with {len(pairs)}")
        s = [adapter(f) for adapter, (f, _) in zip(self.adapters, pairs)]
        t = [f for _, f in pairs]
        total = 0.0
        for i in range(len(pairs) - 1):
            total = total + (P.fsp_matrix(s[i], s[i + 1]) - P.fsp_matrix(t[i], t[i + 1])).pow(2).mean()
        return total


@LOSSES.register("pkt")
class PKTLoss(DistillLoss):
    """Passalis & Tefas probabilistic knowledge transfer: KL(teacher || student) between the
    conditional-probability distributions of cosine similarities in the batch."""

    taps = TapKind.EMBEDDING
    default_weight = 30000.0

    def __init__(self, eps: float = 1e-7) -> None:
        super().__init__()
        self.eps = float(eps)

    def forward(self, student: Features, teacher: Features, labels: torch.Tensor | None = None) -> torch.Tensor:
        total = 0.0
        for s, t in _pairs(student, teacher, "PKTLoss"):
            ps, pt = P.pkt_probabilities(s, self.eps), P.pkt_probabilities(t, self.eps)
            total = total + (pt * torch.log((pt + self.eps) / (ps + self.eps))).mean()
        return total


@LOSSES.register("crd")
class CRDLoss(DistillLoss):
    """Contrastive representation distillation (Tian et al. 2020): student and teacher embeddings
    are projected onto a shared unit sphere of `dim` dimensions; each student embedding must pick
    its own image's teacher embedding out of the batch plus a queue of `queue` teacher embeddings
    from earlier batches (InfoNCE at temperature `nce_t`), and each teacher embedding its
    student's, symmetrically. The paper draws negatives from a memory bank indexed by dataset
    position; a queue (MoCo, He et al. 2020) gives as many negatives without sample indices."""

    taps = TapKind.EMBEDDING
    default_weight = 0.8

    def __init__(self, student_shapes: Sequence[Shape], teacher_shapes: Sequence[Shape], dim: int = 128,
                 queue: int = 4096, nce_t: float = 0.07) -> None:
        super().__init__()
        if dim < 1 or queue < 0 or nce_t <= 0:
            raise ConfigError(f"CRDLoss: need dim >= 1, queue >= 0 and nce_t > 0, got {dim}, {queue}, {nce_t}")
        flat = [(int(torch.tensor(s).prod()), int(torch.tensor(t).prod())) for s, t in zip(student_shapes, teacher_shapes)]
        self.embed_student = nn.ModuleList(nn.Linear(s, dim) for s, _ in flat)
        self.embed_teacher = nn.ModuleList(nn.Linear(t, dim) for _, t in flat)
        self.nce_t, self.size = float(nce_t), int(queue)
        for i in range(len(flat)):  # past embeddings: negatives for the next batches
            self.register_buffer(f"queue_student{i}", torch.zeros(self.size, dim), persistent=False)
            self.register_buffer(f"queue_teacher{i}", torch.zeros(self.size, dim), persistent=False)
        self.register_buffer("filled", torch.zeros((), dtype=torch.long), persistent=False)
        self.register_buffer("cursor", torch.zeros((), dtype=torch.long), persistent=False)

    @classmethod
    def build(cls, student_shapes, teacher_shapes, **options):
        _check_tap_counts(cls, student_shapes, teacher_shapes)
        return _construct(cls, student_shapes, teacher_shapes, **options)

    def forward(self, student: Features, teacher: Features, labels: torch.Tensor | None = None) -> torch.Tensor:
        pairs = _pairs(student, teacher, "CRDLoss")
        if len(pairs) != len(self.embed_student):
            raise ConfigError(f"CRDLoss: built for {len(self.embed_student)} taps, called with {len(pairs)}")
        total, filled = 0.0, int(self.filled)
        fresh = []
        for i, (s, t) in enumerate(pairs):
            zs = F.normalize(self.embed_student[i](s.flatten(1)), dim=1)
            zt = F.normalize(self.embed_teacher[i](t.flatten(1)), dim=1)
            queue_s, queue_t = getattr(self, f"queue_student{i}")[:filled], getattr(self, f"queue_teacher{i}")[:filled]
            target = torch.arange(len(zs), device=zs.device)
            student_view = zs @ torch.cat([zt, queue_t]).T / self.nce_t  # the own teacher embedding is the positive
            teacher_view = zt @ torch.cat([zs, queue_s]).T / self.nce_t
            total = total + (F.cross_entropy(student_view, target) + F.cross_entropy(teacher_view, target)) / 2
            fresh.append((zs.detach(), zt.detach()))
        if self.training and self.size:
            self._enqueue(fresh)
        return total

    @torch.no_grad()
    def _enqueue(self, fresh: list[tuple[torch.Tensor, torch.Tensor]]) -> None:
        n = min(len(fresh[0][0]), self.size)
        rows = (int(self.cursor) + torch.arange(n, device=self.cursor.device)) % self.size
        for i, (zs, zt) in enumerate(fresh):
            getattr(self, f"queue_student{i}")[rows] = zs[-n:].to(self.cursor.device)
            getattr(self, f"queue_teacher{i}")[rows] = zt[-n:].to(self.cursor.device)
        self.cursor.fill_((int(self.cursor) + n) % self.size)
        self.filled.fill_(min(int(self.filled) + n, self.size))


def build_loss(name: str, student_shapes: Sequence[Shape], teacher_shapes: Sequence[Shape], **options) -> DistillLoss:
    """A registered loss by name, sized for the given features."""
    return LOSSES.get(name).build(student_shapes, teacher_shapes, **options)
