"""Training detectors on the engine: losses go down, val mAP is recorded, EMA follows its formula,
resume is exact, and distillation from an unpruned teacher trains the pruned student."""

from __future__ import annotations

import copy
import math

import pytest
import torch
import torch.nn as nn

from deepshrink.data import BatchLoader, sample_loader
from deepshrink.detection import DetectionObjective, ModelEMA, distill_detector, train_detector
from deepshrink.errors import ConfigError
from deepshrink.pruning import prune
from deepshrink.training import TrainState

FAST = {"epochs": 2, "batch_size": 2, "lr": 0.01, "limit_batches": 2, "progress": False, "seed": 3}


def test_a_few_steps_fit_one_batch(tiny_bundle, tiny_detector) -> None:
    model = tiny_detector().train()
    objective = DetectionObjective(3, model.strides)
    images, targets = next(iter(BatchLoader(tiny_bundle.train, 4, train=False, mean=tiny_bundle.mean, std=tiny_bundle.std)))
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(15):
        loss, _ = objective(model, images, targets)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.6 * losses[0]


def test_train_detector_records_val_map_and_returns_ema_weights(tiny_bundle, tiny_detector) -> None:
    model = tiny_detector()
    result = train_detector(model, tiny_bundle, FAST, options={"ema_tau": 1.0})
    assert [r["epoch"] for r in result.history] == [1, 2]
    for record in result.history:
        assert math.isfinite(record["train_loss"]) and 0.0 <= record["val_map50"] <= 100.0
        assert record["val_map50_95"] <= record["val_map50"]
    assert not result.model.training


def test_class_count_mismatch_is_an_error(tiny_bundle, tiny_detector) -> None:
    with pytest.raises(ConfigError, match=r"model predicts 5 classes, the data 'yolo' has 3"):
        train_detector(tiny_detector(num_classes=5), tiny_bundle, FAST)


def test_ema_follows_its_ramped_decay() -> None:
    model = nn.Linear(1, 1, bias=False)
    nn.init.zeros_(model.weight)
    ema = ModelEMA(decay=0.5, tau=1.0)
    state = TrainState(model, None, None, None, None)
    ema.on_train_start(state)
    with torch.no_grad():
        model.weight.fill_(1.0)
    ema.on_step_end(state)
    d = 0.5 * (1 - math.exp(-1.0))
    assert ema.shadow["weight"].item() == pytest.approx(1 - d)
    restored = ModelEMA(decay=0.5, tau=1.0)
    restored.load_state_dict(copy.deepcopy(ema.state_dict()))
    ema.on_train_end(state)
    assert model.weight.item() == pytest.approx(1 - d) and restored.updates == 1


class _StopAfterFirstEpoch:
    def on_epoch_start(self, state) -> None:
        if state.epoch == 1:
            raise RuntimeError("interrupted")


def test_resume_continues_exactly(tiny_bundle, tiny_detector, tmp_path) -> None:
    """Objective (augmentation draws) and EMA state come back from the checkpoint."""
    options = {"augment": {"scale": (0.8, 1.2)}, "ema_tau": 2.0}
    torch.manual_seed(0)
    whole = train_detector(tiny_detector(), tiny_bundle, FAST, options=options, out_dir=tmp_path / "a").model
    torch.manual_seed(0)
    with pytest.raises(RuntimeError, match="interrupted"):
        train_detector(tiny_detector(), tiny_bundle, FAST, options=options, out_dir=tmp_path / "b",
                       callbacks=[_StopAfterFirstEpoch()])
    torch.manual_seed(1)  # a fresh model: everything must come from the checkpoint
    resumed = train_detector(tiny_detector(), tiny_bundle, FAST, options=options, out_dir=tmp_path / "b",
                             resume=True).model
    for (name, a), b in zip(whole.state_dict().items(), resumed.state_dict().values()):
        assert torch.equal(a, b), name


def test_distill_pruned_student_from_its_teacher(tiny_bundle, tiny_detector) -> None:
    teacher = tiny_detector(width_mult=0.5, neck_width=32).eval()
    student = prune(teacher, torch.randn(2, 3, 64, 64), ratio=0.5, protect_ends=False).model
    assert student.neck.smooth3.conv.out_channels < teacher.neck.smooth3.conv.out_channels
    before = copy.deepcopy(student.state_dict())
    result = distill_detector(student, teacher, tiny_bundle, dict(FAST, epochs=1), options={"ema": False})
    assert math.isfinite(result.history[0]["train_loss"])
    changed = [k for k, v in result.model.state_dict().items() if v.dtype.is_floating_point and not torch.equal(v, before[k])]
    assert len(changed) > len(before) // 2


@pytest.mark.parametrize("pruned", [False, True])
def test_imitation_adapters_start_at_their_least_squares_fit(tiny_bundle, tiny_detector, pruned) -> None:
    from deepshrink.detection.api import detection_objective
    from deepshrink.detection.config import DetectTrainOptions
    from deepshrink.detection.distill import NECK_TAPS, DetectionDistillObjective

    teacher = tiny_detector(width_mult=0.5, neck_width=32).eval()
    student = prune(teacher, torch.randn(2, 3, 64, 64), ratio=0.5, protect_ends=False).model if pruned else copy.deepcopy(teacher)
    images = next(iter(sample_loader(tiny_bundle, 8)))[0]
    base = detection_objective(student, tiny_bundle, DetectTrainOptions(), 0)
    objective = DetectionDistillObjective(base, student, teacher, calibration=images)
    assert set(objective.adapter_fit) == set(NECK_TAPS)
    for tap, fit in objective.adapter_fit.items():
        assert fit["error_fitted"] < 0.5 * fit["error_random"], tap
        if not pruned:  # equal features: the fit is the identity map, up to the ridge (8 tiny images)
            assert fit["error_fitted"] < 0.05, tap
    objective.close()
