"""Shared fixtures: the embedded digits data, small digits CNNs and a briefly trained teacher."""

from __future__ import annotations

import pytest
import torch

FAST = {"epochs": 2, "batch_size": 64, "optimizer": "adamw", "lr": 3e-3, "weight_decay": 1e-4, "augment": False,
        "progress": False}


@pytest.fixture(scope="session")
def digits():
    from deepshrink.data import load_data

    return load_data("digits")


@pytest.fixture(scope="session")
def make(digits):
    """make(width=...) -> a digits_cnn using the data's normalisation (as the CLI builds it)."""
    from deepshrink.models import create_model

    def build(width: int = 8):
        return create_model("digits_cnn", num_classes=digits.num_classes, input_size=digits.input_size,
                            mean=digits.mean, std=digits.std, width=width)

    return build


@pytest.fixture(scope="session")
def teacher(digits, make):
    from deepshrink.training import train

    torch.manual_seed(0)
    model = make(16)
    train(model, digits, {**FAST, "epochs": 3})
    model.zero_grad(set_to_none=True)  # so the tests can check distillation leaves no gradients
    return model.eval()


@pytest.fixture
def fast() -> dict:
    return dict(FAST)
