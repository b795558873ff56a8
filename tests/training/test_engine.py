"""The training loop: it learns, reports, calls its hooks, and honours objectives and options."""

from __future__ import annotations

import dataclasses
import io

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from _training_fixtures import make_data, tiny_cnn
from rich.console import Console

from deepshrink.data import ImageSet
from deepshrink.errors import ConfigError
from deepshrink.training import HOOKS, CrossEntropyObjective, TrainConfig, train
from deepshrink.training.progress import EpochProgress


def _config(**overrides) -> TrainConfig:
    options = {"epochs": 2, "batch_size": 16, "lr": 0.05, "device": "cpu", "progress": False, "augment": False}
    return TrainConfig(**{**options, **overrides})


def test_short_run_lowers_the_loss_and_reports_every_epoch():
    model = tiny_cnn()
    result = train(model, make_data(), _config(epochs=4, lr=0.1, augment=True))
    assert result.model is model and not model.training
    history = result.history
    assert [r["epoch"] for r in history] == [1, 2, 3, 4] and history[-1]["step"] == 16
    assert history[-1]["train_loss"] < 0.7 * history[0]["train_loss"]
    assert history[-1]["val_top1"] > 50.0  # 4 classes: chance is 25 %
    assert history[-1]["val_top5"] == 100.0
    for record in history:
        assert record["images_per_s"] > 0 and record["seconds"] > 0 and 0 <= record["train_top1"] <= 100
    assert history[0]["lr"] == 0.1 and history[-1]["lr"] < history[0]["lr"]  # cosine


def test_eval_every_and_empty_val_split():
    data = make_data()
    history = train(tiny_cnn(), data, _config(epochs=3, eval_every=2)).history
    assert ["val_top1" in r for r in history] == [False, True, True]  # every 2nd and the last
    no_val = dataclasses.replace(data, val=ImageSet(data.val.images[:0], data.val.labels[:0]))
    assert all("val_loss" not in r for r in train(tiny_cnn(), no_val, _config()).history)


def test_default_objective_gets_the_label_smoothing():
    seen = {}

    class Spy:
        def on_train_start(self, state):
            seen["objective"] = state.objective

    train(tiny_cnn(), make_data(), _config(epochs=1, label_smoothing=0.3), callbacks=[Spy()])
    objective = seen["objective"]
    assert isinstance(objective, CrossEntropyObjective) and objective.label_smoothing == 0.3
    logits, labels = torch.randn(6, 4), torch.tensor([0, 1, 2, 3, 0, 1])
    loss, out = objective(nn.Identity(), logits, labels)
    assert out is logits
    smooth = 0.3 / 4 + 0.7 * F.one_hot(labels, 4)  # the smoothed target, written out
    assert loss.item() == pytest.approx(-(smooth * logits.log_softmax(1)).sum(1).mean().item(), rel=1e-6)
    assert loss.item() != pytest.approx(F.cross_entropy(logits, labels).item(), rel=1e-3)


def test_hooks_fire_in_order_with_counts():
    calls = []

    class Recorder:
        def __getattr__(self, name):
            if name not in HOOKS:
                raise AttributeError(name)
            return lambda state: calls.append((name, state.epoch, state.step))

    train(tiny_cnn(), make_data(), _config(epochs=2), callbacks=[Recorder()])
    names = [c[0] for c in calls]
    assert names[0] == "on_train_start" and names[-1] == "on_train_end"
    assert names.count("on_epoch_start") == names.count("on_epoch_end") == 2
    assert names.count("on_step_end") == 8  # 64 images / 16 per batch, 2 epochs
    assert [c[2] for c in calls if c[0] == "on_step_end"] == list(range(1, 9))
    assert [c[1] for c in calls if c[0] == "on_epoch_end"] == [0, 1]


def test_extra_loss_is_added_to_the_optimised_loss():
    class ConstantTerm:  # shifts the loss, not the gradients
        def extra_loss(self, state):
            return torch.tensor(1.5)

    class L2Term:  # a strong penalty does change the weights
        def extra_loss(self, state):
            return 5.0 * sum(p.square().sum() for p in state.model.parameters())

    plain = train(tiny_cnn(), make_data(), _config(epochs=1))
    shifted = train(tiny_cnn(), make_data(), _config(epochs=1), callbacks=[ConstantTerm()])
    assert shifted.last["train_loss"] == pytest.approx(plain.last["train_loss"] + 1.5, rel=1e-6)
    penalised = train(tiny_cnn(), make_data(), _config(epochs=1), callbacks=[L2Term()])
    norm = lambda m: sum(p.norm() ** 2 for p in m.parameters()).item()  # noqa: E731
    assert norm(penalised.model) < 0.5 * norm(plain.model)


def test_objective_parameters_are_trained():
    class ScaledCE(nn.Module):  # a learnable logit scale, e.g. a regressor in FitNets
        def __init__(self):
            super().__init__()
            self.scale = nn.Parameter(torch.ones(()))

        def forward(self, model, images, labels):
            logits = model(images) * self.scale
            return F.cross_entropy(logits, labels), logits

    objective = ScaledCE()
    train(tiny_cnn(), make_data(), _config(epochs=1), objective=objective)
    assert objective.scale.item() != 1.0


def test_grad_clip_bounds_the_update():
    model = tiny_cnn(bn=False)
    before = torch.cat([p.detach().flatten().clone() for p in model.parameters()])
    config = _config(epochs=1, limit_batches=1, lr=1.0, momentum=0.0, weight_decay=0.0, schedule="constant",
                     grad_clip=1e-3)
    train(model, make_data(), config)
    after = torch.cat([p.detach().flatten() for p in model.parameters()])
    assert 0 < (after - before).norm().item() <= 1e-3 * (1 + 1e-5)


def test_channels_last_and_limit_batches():
    model = tiny_cnn()
    result = train(model, make_data(), _config(epochs=1, channels_last=True, limit_batches=2))
    assert model[0].weight.is_contiguous(memory_format=torch.channels_last)
    assert result.last["step"] == 2


def test_too_large_batch_and_bad_config_name_the_field():
    with pytest.raises(ConfigError, match="batch_size: 128 yields no full batch from 64 training images"):
        train(tiny_cnn(), make_data(), _config(batch_size=128))
    with pytest.raises(ConfigError, match="optimizer: Input should be 'sgd' or 'adamw', got 'adam2'"):
        train(tiny_cnn(), make_data(), {"optimizer": "adam2"})


def test_adamw_onecycle_run_learns():
    result = train(tiny_cnn(), make_data(), _config(epochs=3, optimizer="adamw", lr=0.02, schedule="onecycle"))
    assert result.history[-1]["train_loss"] < result.history[0]["train_loss"]


def test_progress_bar_only_on_a_terminal():
    assert not EpochProgress(True, 3).active  # pytest captures stderr: not a terminal
    assert not EpochProgress(False, 3, console=Console(file=io.StringIO(), force_terminal=True)).active
    out = io.StringIO()
    bar = EpochProgress(True, 3, every=4, console=Console(file=out, force_terminal=True, width=120))
    bar.start_epoch(0, 8)
    assert [bar.due(step) for step in range(1, 9)] == [False, False, False, True] * 2
    bar.update(4, 1.2345, 250.0)
    bar.end_epoch({"epoch": 1, "lr": 0.1, "train_loss": 1.2, "train_top1": 40.0, "images_per_s": 250.0, "seconds": 2.0})
    bar.close()
    text = out.getvalue()
    assert "epoch 1/3" in text and "250 img/s" in text and "loss 1.2345" in text and "eta" in text
    assert "epoch 1 | lr 0.1 | train loss 1.2000 | top-1 40.00% | 250 img/s, 2.0s" in text
