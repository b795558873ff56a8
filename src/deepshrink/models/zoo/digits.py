"""A small CNN for scikit-learn's 8×8 handwritten digits, the embedded default dataset: two
conv3×3-BN-ReLU blocks (32, 64 channels), global average pooling, one linear. 19,562 parameters;
it trains to >= 95 % test accuracy in seconds on a CPU and still has every layer type the
compression families handle (conv, BN, ReLU, pooling, linear)."""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from deepshrink.models.registry import MODELS
from deepshrink.models.zoo.layers import ConvBNAct, init_weights, require_int


class DigitsCNN(nn.Module):
    def __init__(self, num_classes: int = 10, width: int = 32, in_channels: int = 1) -> None:
        super().__init__()
        self.block1 = ConvBNAct(in_channels, width, 3)
        self.block2 = ConvBNAct(width, 2 * width, 3)
        self.classifier = nn.Linear(2 * width, num_classes)
        init_weights(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.block2(self.block1(x))
        return self.classifier(F.adaptive_avg_pool2d(x, 1).flatten(1))


@MODELS.register(
    "digits_cnn",
    input_size=(1, 8, 8),
    mean=(0.5,),
    std=(0.25,),
    num_classes=10,
    params=19_562,
    family="cnn",
    description="Small CNN for the 8x8 sklearn digits (2 conv-BN-ReLU blocks 32/64, global pool, linear)",
)
def digits_cnn(num_classes: int = 10, *, width: int = 32) -> DigitsCNN:
    return DigitsCNN(
        require_int("digits_cnn", "num_classes", num_classes, 1), require_int("digits_cnn", "width", width, 1)
    )
