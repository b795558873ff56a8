"""`distill` on the real engine and the embedded digits data: it learns, it never touches the
teacher, teachers are weighted, a pruned copy learns from its unpruned original, bad input is named."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F

from deepshrink.distillation import DistillConfig, build_objective, distill
from deepshrink.errors import ConfigError


def _batch(data):
    from deepshrink.data import BatchLoader

    loader = BatchLoader(data.train, 256, train=False, augment=False, mean=data.mean, std=data.std)
    return next(iter(loader))


def _kd_gap(student, teacher, data, config) -> tuple[float, float]:
    """(objective value, T^2 KL(q_T || p_T)) on a fixed batch. The objective's soft term is the
    cross-entropy of eq. 1, which also holds the teacher's entropy (a constant); the KL is the part
    the student can reduce."""
    objective = build_objective(student, [teacher], (1.0,), config, input_size=data.input_size)
    images, labels = _batch(data)
    student.eval()
    with torch.no_grad():
        value = objective(student, images, labels)[0].item()
        t = config.temperature
        log_p, log_q = F.log_softmax(student(images) / t, 1), F.log_softmax(teacher(images) / t, 1)
        kl = (log_q.exp() * (log_q - log_p)).sum(1).mean().item() * t * t
    objective.close()
    return value, kl


def _count_calls(model) -> list[int]:
    calls = [0]
    model.register_forward_hook(lambda *_: calls.__setitem__(0, calls[0] + 1))
    return calls


def test_distill_improves_its_starting_loss_and_never_updates_the_teacher(digits, make, teacher, fast):
    before = copy.deepcopy(teacher.state_dict())
    student = make(8)
    config = DistillConfig(losses=["kd", "at", "fitnet"], train=fast)
    kd_only = DistillConfig(weights={"alpha": 0, "beta": 1}, train=fast)
    start, start_kl = _kd_gap(copy.deepcopy(student), teacher, digits, kd_only)
    result = distill(student, teacher, digits, config)
    assert result.model is student and not student.training
    assert result.history[-1]["train_loss"] < result.history[0]["train_loss"]
    end, end_kl = _kd_gap(student, teacher, digits, kd_only)
    assert end < start and start - end == pytest.approx(start_kl - end_kl, rel=1e-3)  # CE = KL + const
    assert end_kl < 0.85 * start_kl
    after = teacher.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)  # weights and BN statistics
    assert all(p.grad is None for p in teacher.parameters()) and not teacher.training
    assert all(not m._forward_hooks for m in [*teacher.modules(), *student.modules()])  # hooks removed
    adapters = dict(result.objective.named_parameters())
    assert adapters and all(name.startswith("losses.") for name in adapters)  # FitNets regressor only
    images, labels = _batch(digits)
    value, _ = result.objective(student, images, labels)  # the returned objective still works (hooks re-attach)
    assert torch.isfinite(value)
    result.objective.close()


def test_zero_weight_teacher_never_runs_and_weights_are_normalised(digits, make, teacher, fast):
    other = make(8).eval()
    calls = _count_calls(other)
    torch.manual_seed(1)
    student = make(8)
    alone = distill(copy.deepcopy(student), teacher, digits, DistillConfig(train=fast))
    mixed = distill(copy.deepcopy(student), [teacher, other], digits, DistillConfig(teacher_weights=[3, 0], train=fast))
    assert calls[0] == 1 and mixed.teacher_weights == (1.0, 0.0)  # only the shape probe ran it
    assert [h["train_loss"] for h in mixed.history] == pytest.approx([h["train_loss"] for h in alone.history], rel=1e-6)
    both = distill(copy.deepcopy(student), [teacher, other], digits, DistillConfig(teacher_weights=[1, 1], train=fast))
    assert calls[0] > 1 and both.teacher_weights == (0.5, 0.5)
    assert not torch.equal(both.model.classifier.weight, alone.model.classifier.weight)


def test_teacher_weights_mix_the_objective_linearly(digits, make, teacher):
    other, student = make(8).eval(), make(8).eval()
    images, labels = _batch(digits)
    config = DistillConfig(losses=["kd", "at"], teacher_weights=[3, 1])

    def value(teachers, weights):
        objective = build_objective(student, teachers, weights, config, input_size=digits.input_size)
        with torch.no_grad():
            return objective(student, images, labels)[0].item()

    mixed = value([teacher, other], (0.75, 0.25))
    assert mixed == pytest.approx(0.75 * value([teacher], (1.0,)) + 0.25 * value([other], (1.0,)), rel=1e-6)


def _pruned_copy(model, make, keep: int):
    """A narrower digits_cnn holding the first `keep` filters of each conv (what channel pruning keeps)."""
    small = make(keep)
    big = model.state_dict()
    state = {}
    for key, value in small.state_dict().items():
        source = big[key]
        state[key] = source[tuple(slice(0, n) for n in value.shape)] if value.dim() else source
    small.load_state_dict(state)
    return small


def test_self_distillation_from_the_unpruned_model_bridges_widths(digits, make, teacher, fast):
    student = _pruned_copy(teacher, make, 8)  # 16/32 channels -> 8/16
    config = DistillConfig(losses=["kd", "at", "fitnet", "fsp", "sp", "rkd", "pkt"], train=fast)
    result = distill(student, teacher, digits, config)
    by_name = {term.name: loss for term, loss in zip(result.objective.terms, result.objective.losses)}
    conv = by_name["fitnet"].regressors[0][0]
    assert (conv.in_channels, conv.out_channels) == (16, 32)  # block2 (the hint stage): pruned width -> teacher's
    assert [a.in_channels for a in by_name["fsp"].adapters] == [8, 16]
    assert result.history[-1]["train_loss"] < result.history[0]["train_loss"]


def test_cached_teacher_logits_skip_the_teacher_and_change_nothing(digits, make, teacher, fast):
    student = make(8)
    plain = distill(copy.deepcopy(student), teacher, digits, DistillConfig(train=fast))
    calls = _count_calls(teacher)
    cached = distill(copy.deepcopy(student), teacher, digits, DistillConfig(cache_teacher_logits=True, train=fast))
    seen = (len(digits.train) // fast["batch_size"]) * fast["batch_size"]  # per epoch (drop_last)
    cache = cached.objective.cache
    assert cache.hits + cache.misses == 2 * seen and cache.misses == len(cache)
    assert cache.misses < seen + 64  # epoch 2 computes only images epoch 1 dropped
    assert calls[0] <= 1 + 2 * (seen // fast["batch_size"])
    losses = [h["train_loss"] for h in plain.history]
    assert [h["train_loss"] for h in cached.history] == pytest.approx(losses, rel=1e-5)


def test_checkpoint_holds_the_adapters_not_the_teacher(digits, make, teacher, fast, tmp_path):
    from deepshrink.fileio import safe_torch_load

    config = DistillConfig(losses=["kd", "fitnet"], train={**fast, "epochs": 1})
    distill(make(8), teacher, digits, config, out_dir=tmp_path)
    objective_state = safe_torch_load(tmp_path / "checkpoint.pt")["objective"]
    assert objective_state and all(key.startswith("losses.1.regressors.0.") for key in objective_state)


def test_class_count_mismatch_names_both_numbers(digits, make, fast):
    from deepshrink.models import create_model

    five = create_model("digits_cnn", num_classes=5, input_size=digits.input_size)
    message = r"teacher 0 \(DigitsCNN\) predicts 5 classes, the student \(DigitsCNN\) predicts 10"
    with pytest.raises(ConfigError, match=message):
        distill(make(8), five, digits, DistillConfig(train=fast))
    with pytest.raises(ConfigError, match=r"student \(DigitsCNN\) predicts 5 classes, the data has 10"):
        distill(five, make(8), digits, DistillConfig(train=fast))


def test_bad_teachers_and_paths_are_named(digits, make, teacher, fast):
    student = make(8)
    with pytest.raises(ConfigError, match="needs at least one teacher"):
        distill(student, [], digits, DistillConfig(train=fast))
    with pytest.raises(ConfigError, match="teacher 0 is the student itself"):
        distill(student, student, digits, DistillConfig(train=fast))
    with pytest.raises(ConfigError, match="teacher 1: expected an nn.Module, got str"):
        distill(student, [teacher, "resnet56"], digits, DistillConfig(train=fast))
    with pytest.raises(ConfigError, match="teacher_weights: 1 weights for 2 teachers"):
        distill(student, [teacher, make(8)], digits, DistillConfig(teacher_weights=[1], train=fast))
    bad_path = DistillConfig(losses=[{"name": "at", "student": ["block3"]}], train=fast)
    message = r"student: feature path 'block3' is not a module of DigitsCNN \(did you mean: block2, block1"
    with pytest.raises(ConfigError, match=message):
        distill(student, teacher, digits, bad_path)
    bad_teacher_path = DistillConfig(losses=[{"name": "at", "student": ["block2"], "teacher": ["blok2"]}], train=fast)
    message = r"teacher 0: feature path 'blok2' is not a module of DigitsCNN \(did you mean: block2"
    with pytest.raises(ConfigError, match=message):
        distill(student, teacher, digits, bad_teacher_path)
