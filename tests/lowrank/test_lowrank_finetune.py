"""Recovery by fine-tuning with distillation from the original model, on the training engine."""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn

from deepshrink.data import BatchLoader
from deepshrink.errors import ConfigError
from deepshrink.lowrank import decompose
from deepshrink.lowrank.finetune import finetune, recalibrate_bn_, recovery_config
from deepshrink.models import create_model, load, save_model
from lowrank_models import relative_error

TRAIN = {"batch_size": 16, "lr": 0.05, "channels_last": False, "progress": False, "device": "cpu", "augment": False}


def _logits(model: nn.Module, data) -> torch.Tensor:
    loader = BatchLoader(data.test, 64, train=False, augment=False, mean=data.mean, std=data.std, seed=0)
    model.eval()
    with torch.no_grad():
        return torch.cat([model(images) for images, _ in loader])


def test_distillation_pulls_the_decomposed_model_back_to_the_original(tiny_data, tmp_path) -> None:
    torch.manual_seed(0)
    original = create_model("lowrank_models:tiny_cnn", num_classes=4, input_size=(3, 16, 16)).eval()
    student = decompose(original, method="cp", ratio=3, advanced={"cp_iterations": 20})
    reference = _logits(original, tiny_data)
    before = relative_error(_logits(student, tiny_data), reference)

    # Pure KD (no label term) so the target is exactly the original's function.
    config = recovery_config(3, **TRAIN).with_updates(weights={"alpha": 0.0, "beta": 1.0})
    result = finetune(student, original, tiny_data, config)

    assert result.model is student and len(result.history) == 3
    after = relative_error(_logits(student, tiny_data), reference)
    assert after < 0.75 * before, (before, after)
    assert all(not p.requires_grad or p.grad is None for p in original.parameters())  # the teacher is untouched
    save_model(student, tmp_path / "m")  # the fine-tuned factors still replay from the plan
    with torch.no_grad():
        assert torch.allclose(load(tmp_path / "m").eval()(torch.ones(1, 3, 16, 16)), student(torch.ones(1, 3, 16, 16)))


def test_finetune_rejects_ambiguous_or_self_teaching_calls(tiny: nn.Module, tiny_data) -> None:
    student = decompose(tiny, method="svd", ratio=2)
    with pytest.raises(ConfigError, match="give epochs= or config=, not both"):
        finetune(student, tiny, tiny_data, recovery_config(1), epochs=2)
    with pytest.raises(ConfigError, match="the teacher must be the original model"):
        finetune(student, student, tiny_data, epochs=1)
    with pytest.raises(ConfigError, match=r"lr: Input should be greater than 0"):
        recovery_config(1, lr=0)


def test_bn_recalibration_gives_the_exact_statistics_of_the_training_split(tiny: nn.Module, tiny_data) -> None:
    new = decompose(tiny, method="tucker", ratio=2)
    recalibrate_bn_(new, tiny_data, batches=100, batch_size=16)  # 96 images: 6 equal batches, all of them
    loader = BatchLoader(tiny_data.train, 96, train=False, augment=False, mean=tiny_data.mean, std=tiny_data.std)
    with torch.no_grad():
        stem = new.stem(next(iter(loader))[0])
    assert torch.allclose(new.bn.running_mean, stem.mean(dim=(0, 2, 3)), atol=1e-5)
    assert not new.training
    with pytest.raises(ConfigError, match="bn_batches must be >= 1"):
        recalibrate_bn_(new, tiny_data, batches=-1)
