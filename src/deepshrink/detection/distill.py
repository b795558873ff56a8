"""Distillation for detectors: feature imitation on the neck outputs plus logit KD on the
classification branch, added to the student's own FCOS losses.

    L = L_fcos + feature_weight * sum_l ||A_l(F_s,l) - F_t,l||^2 / ||F_t,l||^2
               + logit_weight * sum_p w_p BCE(s_p / T, sigmoid(t_p / T)) / sum_p w_p

A_l is a 1x1 convolution (trained with the student) mapping a pruned student's neck width to the
teacher's. Given calibration images it starts at the least-squares map from the student's features
to the teacher's on them (`deepshrink.layerfit`): a random start would make the student first chase
a random projection of the teacher. Normalising by the teacher feature's energy keeps every level on the same scale
(mimic-style imitation, Li et al. 2017). The KD weight w_p of a point is the teacher's best class
probability there, so the many background points do not drown the few objects. The teacher sees
the same augmented batch as the student; it is held outside the module tree (never optimised or
checkpointed)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from deepshrink.detection.objective import DetectionObjective
from deepshrink.distillation.hooks import FeatureHooks
from deepshrink.distillation.objective import ready_teacher
from deepshrink.layerfit import fit_layer_, relative_error

CALIBRATION_CHUNK = 16  # images per forward pass while fitting the adapters
NECK_TAPS = ("neck.smooth3", "neck.fuse4", "neck.fuse5")  # the P3, P4, P5 outputs of the PAN neck


class DetectionDistillObjective(nn.Module):
    def __init__(
        self,
        base: DetectionObjective,
        student: nn.Module,
        teacher: nn.Module,
        *,
        taps: Sequence[str] = NECK_TAPS,
        feature_weight: float = 1.0,
        logit_weight: float = 1.0,
        temperature: float = 1.0,
        example: torch.Tensor | None = None,
        calibration: torch.Tensor | None = None,
    ) -> None:
        super().__init__()
        self.base = base
        self.teachers = (teacher.eval(),)  # a tuple: not a submodule
        self.feature_weight, self.logit_weight, self.temperature = feature_weight, logit_weight, temperature
        self.student_hooks = FeatureHooks(student, taps)
        self.teacher_hooks = FeatureHooks(teacher, taps)
        self.taps = tuple(taps)
        # one forward pass reads the tapped widths the adapters map between
        probe = example if example is not None else calibration[:1] if calibration is not None else None
        probe = torch.zeros(1, 3, 64, 64) if probe is None else probe
        with torch.no_grad():
            was_training = student.training
            student.eval()
            student(probe)
            student.train(was_training)
            teacher(probe)
        s_feats, t_feats = self.student_hooks.pop(), self.teacher_hooks.pop()
        self.adapters = nn.ModuleDict({
            tap.replace(".", "_"): nn.Conv2d(s_feats[tap].shape[1], t_feats[tap].shape[1], 1) for tap in self.taps
        })
        self.last_terms: dict[str, torch.Tensor] = {}
        # per tap, the adapter's relative error on the calibration images at a random start and after the fit
        self.adapter_fit: dict[str, dict[str, float]] = {}
        if calibration is not None:
            self._fit_adapters(student, teacher, calibration)

    @torch.no_grad()
    def _fit_adapters(self, student: nn.Module, teacher: nn.Module, images: torch.Tensor) -> None:
        """Each adapter := the ridge least-squares map from student to teacher features on `images`."""
        was_training = student.training
        student.eval()
        features: dict[str, tuple[list, list]] = {tap: ([], []) for tap in self.taps}
        for chunk in images.split(CALIBRATION_CHUNK):
            student(chunk)
            teacher(chunk)
            s_feats, t_feats = self.student_hooks.pop(), self.teacher_hooks.pop()
            for tap in self.taps:
                features[tap][0].append(s_feats[tap])
                features[tap][1].append(t_feats[tap])
        student.train(was_training)
        for tap in self.taps:
            adapter, pairs = self.adapters[tap.replace(".", "_")], list(zip(*features[tap]))
            random_start = relative_error(adapter, pairs)
            fit_layer_(adapter, pairs)
            self.adapter_fit[tap] = {"error_random": random_start, "error_fitted": relative_error(adapter, pairs)}

    def forward(self, model: nn.Module, images: torch.Tensor, targets: torch.Tensor) -> tuple[torch.Tensor, None]:
        images, targets = self.base.prepare(model, images, targets)
        raw = model(images)
        s_feats = self.student_hooks.pop()
        teacher = ready_teacher(self.teachers[0], images.device)
        with torch.no_grad():
            t_raw = teacher(images)
            t_feats = self.teacher_hooks.pop()
        loss = self.base.task_loss(raw, images, targets)
        imitation = sum(self._imitation(tap, s_feats[tap], t_feats[tap]) for tap in self.taps)
        t_prob = (t_raw[..., 5:].float() / self.temperature).sigmoid()
        weight = t_prob.amax(-1, keepdim=True)
        bce = F.binary_cross_entropy_with_logits(raw[..., 5:].float() / self.temperature, t_prob, reduction="none")
        kd = (bce * weight).sum() / (weight.sum() * t_prob.shape[-1]).clamp_min(1e-6)
        self.last_terms = {**self.base.last_terms, "imitation": imitation.detach(), "kd": kd.detach()}
        return loss + self.feature_weight * imitation + self.logit_weight * kd, None

    def _imitation(self, tap: str, student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
        """||A(F_s) - F_t||^2 / ||F_t||^2 for one level."""
        error = (self.adapters[tap.replace(".", "_")](student) - teacher).pow(2).sum()
        return error / teacher.pow(2).sum().clamp_min(1e-6)

    def close(self) -> None:
        self.student_hooks.remove()
        self.teacher_hooks.remove()
