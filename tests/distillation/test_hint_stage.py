"""Two-stage distillation (FitNets, FSP): `hint_epochs` first trains on the feature losses alone,
then on the labels and logit losses; each stage checkpoints, so an interrupted run resumes."""

from __future__ import annotations

import copy

import pytest
import torch

from deepshrink.distillation import DistillConfig, distill
from deepshrink.errors import ConfigError


class _Snapshots:
    """The classifier's weights at the end of each stage (train() runs once per stage)."""

    def __init__(self) -> None:
        self.classifier: list[torch.Tensor] = []

    def on_train_end(self, state) -> None:
        self.classifier.append(state.model.classifier.weight.detach().clone())


class _StopAtSecondStage:
    def __init__(self) -> None:
        self.starts = 0

    def on_train_start(self, state) -> None:
        self.starts += 1
        if self.starts == 2:
            raise KeyboardInterrupt


def test_hint_stage_leaves_the_classifier_alone_then_trains_it(digits, make, teacher, fast):
    student = make(16)
    initial_classifier = student.classifier.weight.detach().clone()
    initial_block1 = student.block1.conv.weight.detach().clone()
    snapshots = _Snapshots()
    config = DistillConfig(losses=["kd", "fsp"], hint_epochs=2, train=fast)
    result = distill(student, teacher, digits, config, callbacks=[snapshots])
    # FSP reads the stage outputs: no gradient reaches the classifier behind them in the hint stage
    assert torch.equal(snapshots.classifier[0], initial_classifier)
    assert not torch.equal(result.model.block1.conv.weight, initial_block1)
    assert not torch.equal(snapshots.classifier[1], initial_classifier)  # the second stage trains on labels and logits
    assert [h.get("stage") for h in result.history] == ["hint", "hint", None, None]
    hint = [h["train_loss"] for h in result.history[:2]]
    assert hint[1] < hint[0]
    # the untouched classifier guesses during the hint stage; the second stage teaches it the classes
    assert result.history[-1]["val_top1"] > result.history[1]["val_top1"] + 20


def test_an_interrupted_two_stage_run_resumes_to_the_same_weights(digits, make, teacher, fast, tmp_path):
    config = DistillConfig(losses=["kd", "fitnet"], hint_epochs=1, train={**fast, "epochs": 1})
    torch.manual_seed(0)
    student = make(8)
    fresh = copy.deepcopy(student.state_dict())
    whole = distill(student, teacher, digits, config)

    interrupted = make(8)
    interrupted.load_state_dict(fresh)
    with pytest.raises(KeyboardInterrupt):
        distill(interrupted, teacher, digits, config, out_dir=tmp_path, callbacks=[_StopAtSecondStage()])
    assert (tmp_path / "hint" / "checkpoint.pt").is_file() and not (tmp_path / "checkpoint.pt").exists()
    resumed_model = make(8)
    resumed_model.load_state_dict(fresh)
    resumed = distill(resumed_model, teacher, digits, config, out_dir=tmp_path, resume=True)
    expected, actual = whole.model.state_dict(), resumed.model.state_dict()
    assert all(torch.equal(expected[k], actual[k]) for k in expected)
    assert [h["train_loss"] for h in resumed.history] == pytest.approx([h["train_loss"] for h in whole.history])


@pytest.mark.parametrize("options, message", [
    ({"losses": ["kd"]}, "hint_epochs: the hint stage trains on feature or relation losses .* only kd"),
    ({"losses": ["fsp"], "weights": {"alpha": 0, "beta": 1}},
     "hint_epochs: .* alpha is 0 and every loss reads features"),
    ({"losses": ["kd", "fsp"], "hint_epochs": -1}, "hint_epochs"),
])
def test_a_hint_stage_with_nothing_to_train_on_is_refused(options, message):
    with pytest.raises(ConfigError, match=message):
        DistillConfig.coerce({"hint_epochs": 1, **options})


def test_a_zero_weight_feature_loss_leaves_the_hint_stage_empty(digits, make, teacher, fast):
    config = DistillConfig(losses=["kd", {"name": "fsp", "weight": 0}], hint_epochs=1, train=fast)
    with pytest.raises(ConfigError, match="hint_epochs: no feature or relation loss has a weight"):
        distill(make(8), teacher, digits, config)
