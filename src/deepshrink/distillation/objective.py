"""The distillation objective the training engine calls: `objective(model, images, labels)`.

    L = alpha CE(y, p) + sum_t w_t sum_l lambda_l L_l(student features, teacher t features)

Teachers are held outside the module tree (a plain tuple), so `objective.parameters()` yields only
the loss adapters the engine must optimise and the checkpoint never stores teacher weights.
Teachers run in eval mode under no_grad (bf16 autocast on CUDA); losses run in FP32."""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from deepshrink.distillation.hooks import FeatureHooks, unwrap
from deepshrink.distillation.losses import DistillLoss
from deepshrink.errors import ConfigError


@dataclass(frozen=True)
class Term:
    """Where one built loss reads its inputs and how much it counts."""

    name: str
    teacher: int  # index into the teachers
    weight: float  # teacher weight x loss weight (x beta for kd)
    student_taps: tuple[str, ...]  # () = logits
    teacher_taps: tuple[str, ...]


class TeacherLogitCache:
    """Teacher logits keyed by a hash of each (normalised) input image, for un-augmented passes:
    from the second epoch on, a batch whose images were all seen before skips the teacher."""

    def __init__(self) -> None:
        self._stores: dict[int, dict[bytes, torch.Tensor]] = {}
        self.hits = 0
        self.misses = 0

    @staticmethod
    def keys(images: torch.Tensor) -> list[bytes]:
        rows = images.detach().to("cpu", torch.float32).contiguous().numpy()
        return [hashlib.blake2b(row.tobytes(), digest_size=16).digest() for row in rows]

    def get(self, teacher: int, images: torch.Tensor, compute: Callable[[torch.Tensor], torch.Tensor]) -> torch.Tensor:
        """Logits for `images`; the teacher runs only on the images not seen before (in eval mode
        each row's logits do not depend on the rest of the batch)."""
        store = self._stores.setdefault(teacher, {})
        keys = self.keys(images)
        missing = [i for i, key in enumerate(keys) if key not in store]
        if missing:
            index = torch.tensor(missing, device=images.device)
            fresh = compute(images.index_select(0, index)).float().detach().cpu()
            for i, row in zip(missing, fresh):
                store[keys[i]] = row
        self.hits += len(keys) - len(missing)
        self.misses += len(missing)
        return torch.stack([store[key] for key in keys]).to(images.device)

    def __len__(self) -> int:
        return sum(len(store) for store in self._stores.values())


class DistillObjective(nn.Module):
    def __init__(
        self,
        teachers: Sequence[nn.Module],
        terms: Sequence[Term],
        losses: Sequence[DistillLoss],
        *,
        alpha: float,
        label_smoothing: float = 0.0,
        cache: TeacherLogitCache | None = None,
    ) -> None:
        super().__init__()
        if cache is not None and any(term.teacher_taps for term in terms):
            raise ConfigError("cache_teacher_logits: only logits are cached, but a loss reads teacher features")
        self.losses = nn.ModuleList(losses)
        self.terms = tuple(terms)
        self.alpha = float(alpha)
        self.label_smoothing = float(label_smoothing)
        self.cache = cache
        self._teachers = tuple(teachers)  # a tuple is not registered: never optimised or checkpointed
        self._active = sorted({term.teacher for term in self.terms})
        self._teacher_taps = {
            i: [tap for term in self.terms if term.teacher == i for tap in term.teacher_taps] for i in self._active
        }
        self._teacher_hooks: dict[int, FeatureHooks] = {}  # attached on first use, again after close()
        self._student_taps = [tap for term in self.terms for tap in term.student_taps]
        self._student_hooks: FeatureHooks | None = None

    def stage(self, hint: bool) -> "DistillObjective":
        """A view for two-stage training (FitNets, FSP) sharing this objective's losses and adapters:
        the hint stage (`hint=True`: the feature and relation terms alone, no labels) or the stage after
        it (the labels and the logit terms)."""
        kept = [(term, fn) for term, fn in zip(self.terms, self.losses) if bool(term.student_taps) == hint]
        alpha = 0.0 if hint else self.alpha
        if not kept and not alpha:
            what = "no feature or relation loss has a weight" if hint else "alpha is 0 and no logit loss has a weight"
            raise ConfigError(f"hint_epochs: {what}, so that stage has nothing to train on")
        return DistillObjective(self._teachers, [t for t, _ in kept], [fn for _, fn in kept], alpha=alpha,
                                label_smoothing=self.label_smoothing, cache=self.cache)

    @property
    def teachers(self) -> tuple[nn.Module, ...]:
        return self._teachers

    def forward(
        self, model: nn.Module, images: torch.Tensor, labels: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        hooks = self._hooks_for(unwrap(model))
        logits = model(images)  # through the DDP wrapper when there is one
        student = hooks.pop() if hooks is not None else {}
        teachers = self._run_teachers(images)
        # FP32 losses even inside the engine's bf16 autocast: relation losses divide and normalise.
        with torch.autocast(images.device.type, enabled=False):
            s_logits = logits.float()
            loss = s_logits.new_zeros(())
            if self.alpha:
                loss = self.alpha * F.cross_entropy(s_logits, labels, label_smoothing=self.label_smoothing)
            for term, fn in zip(self.terms, self.losses):
                t_logits, t_features = teachers[term.teacher]
                if term.student_taps:
                    s_in = [student[tap].float() for tap in term.student_taps]
                    t_in = [t_features[tap] for tap in term.teacher_taps]
                else:
                    s_in, t_in = s_logits, t_logits
                loss = loss + term.weight * fn(s_in, t_in, labels)
        return loss, logits

    def _hooks_for(self, student: nn.Module) -> FeatureHooks | None:
        """Hooks on the model the engine actually runs (re-attached if it hands over another object)."""
        if not self._student_taps:
            return None
        if self._student_hooks is None or self._student_hooks.model is not student:
            if self._student_hooks is not None:
                self._student_hooks.remove()
            self._student_hooks = FeatureHooks(student, self._student_taps)
        return self._student_hooks

    @torch.no_grad()
    def _run_teachers(self, images: torch.Tensor) -> dict[int, tuple[torch.Tensor, dict[str, torch.Tensor]]]:
        bf16 = torch.autocast("cuda", dtype=torch.bfloat16) if images.is_cuda else contextlib.nullcontext()
        outputs = {}
        for i in self._active:
            teacher = ready_teacher(self._teachers[i], images.device)

            def run(x: torch.Tensor, teacher: nn.Module = teacher) -> torch.Tensor:
                with bf16:
                    return teacher(x)

            if self.cache is not None:
                outputs[i] = (self.cache.get(i, images, run), {})
                continue
            if i not in self._teacher_hooks:
                self._teacher_hooks[i] = FeatureHooks(self._teachers[i], self._teacher_taps[i])
            logits = run(images).float()
            features = self._teacher_hooks[i].pop()
            outputs[i] = (logits, {tap: f.float() for tap, f in features.items()})
        return outputs

    def close(self) -> None:
        """Remove every hook (the models are left as they were given); a later call re-attaches them."""
        for hooks in self._teacher_hooks.values():
            hooks.remove()
        self._teacher_hooks.clear()
        if self._student_hooks is not None:
            self._student_hooks.remove()
            self._student_hooks = None


def ready_teacher(teacher: nn.Module, device: torch.device) -> nn.Module:
    """Eval mode (BN statistics frozen, dropout off) on the batch's device: the training engine
    moves the student where it trains (CUDA under device auto), and the teacher follows."""
    if teacher.training:
        teacher.eval()
    param = next(iter(teacher.parameters()), None)
    if param is not None and param.device != device:
        teacher.to(device)
    return teacher
