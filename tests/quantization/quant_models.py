"""Small models and data for the quantisation tests (importable as `quant_models:<factory>` so
create_model / load can rebuild them)."""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from deepshrink.data import DataBundle, ImageSet
from deepshrink.models import ModelSpec, attach_spec
from deepshrink.models.zoo import CifarResNet

SIZE = (3, 12, 12)
MEAN, STD = (0.5, 0.5, 0.5), (0.25, 0.25, 0.25)


def randomize_bn(model: nn.Module, seed: int = 0) -> nn.Module:
    """Non-trivial BN statistics and affine parameters, so folding has something to fold."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                m.running_mean.copy_(torch.randn(m.num_features, generator=gen) * 0.2)
                m.running_var.copy_(torch.rand(m.num_features, generator=gen) + 0.5)
                m.weight.copy_(torch.rand(m.num_features, generator=gen) + 0.5)
                m.bias.copy_(torch.randn(m.num_features, generator=gen) * 0.1)
    return model.eval()


def tiny_resnet(num_classes: int = 4) -> nn.Module:
    """ResNet-8 (one option-A block per stage) from the zoo: residual adds and padded shortcuts."""
    torch.manual_seed(0)
    return randomize_bn(CifarResNet(8, num_classes))


class Classifier(nn.Module):
    """conv-BN-ReLU x2 (the second strided) -> pool -> linear: a quick learner for 12x12 inputs."""

    def __init__(self, num_classes: int = 4) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 12, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(12)
        self.conv2 = nn.Conv2d(12, 16, 3, stride=2, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(16)
        self.fc = nn.Linear(16, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.bn1(self.conv1(x)))
        x = F.relu(self.bn2(self.conv2(x)))
        return self.fc(F.adaptive_avg_pool2d(x, 1).flatten(1))


def classifier(num_classes: int = 4) -> nn.Module:
    torch.manual_seed(0)
    return randomize_bn(Classifier(num_classes))


class SkewedChain(nn.Module):
    """conv-ReLU-conv-ReLU-conv, reparametrised without changing its function: output channel i
    of one layer scaled by k_i in [0.01, 10] and input channel i of the next by 1 / k_i - the
    imbalance BN folding leaves behind, which CLE undoes."""

    def __init__(self) -> None:
        super().__init__()
        gen = torch.Generator().manual_seed(1)
        self.c1, self.c2, self.c3 = nn.Conv2d(3, 8, 3, padding=1), nn.Conv2d(8, 8, 3, padding=1), nn.Conv2d(8, 4, 1)
        with torch.no_grad():
            for first, second in ((self.c1, self.c2), (self.c2, self.c3)):
                k = torch.logspace(-2, 1, first.out_channels)[torch.randperm(first.out_channels, generator=gen)]
                first.weight.mul_(k.view(-1, 1, 1, 1))
                first.bias.mul_(k)
                second.weight.div_(k.view(1, -1, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.c3(F.relu(self.c2(F.relu(self.c1(x)))))


def with_spec(model: nn.Module, arch: str, num_classes: int = 4) -> nn.Module:
    return attach_spec(model, ModelSpec(arch=arch, num_classes=num_classes, input_size=SIZE, mean=MEAN, std=STD))


def _split(n: int, num_classes: int, gen: torch.Generator) -> ImageSet:
    """Class k: a bright square at one of four corners (k % 4) in channel k % 3, over noise."""
    labels = torch.arange(n) % num_classes
    images = torch.randint(0, 90, (n, *SIZE), generator=gen)
    for k in range(num_classes):
        rows = (labels == k).nonzero().flatten()
        r, c = divmod(k % 4, 2)
        images[rows, k % 3, 6 * r : 6 * r + 6, 6 * c : 6 * c + 6] += 140
    return ImageSet(images.clamp(0, 255).to(torch.uint8), labels)


def synthetic_bundle(n_train: int = 256, n_test: int = 256, num_classes: int = 4) -> DataBundle:
    gen = torch.Generator().manual_seed(0)
    train, val, test = _split(n_train, num_classes, gen), _split(64, num_classes, gen), _split(n_test, num_classes, gen)
    return DataBundle(train=train, val=val, test=test, classes=tuple(map(str, range(num_classes))),
                      num_classes=num_classes, input_size=SIZE, mean=MEAN, std=STD, name="synthetic")


def normalized(images: ImageSet) -> tuple[torch.Tensor, torch.Tensor]:
    x = images.images.float() / 255
    return (x - torch.tensor(MEAN).view(1, -1, 1, 1)) / torch.tensor(STD).view(1, -1, 1, 1), images.labels


def fit(model: nn.Module, bundle: DataBundle, steps: int = 60) -> nn.Module:
    """A few Adam steps (no engine: fast and deterministic), then eval mode."""
    x, y = normalized(bundle.train)
    opt = torch.optim.Adam(model.parameters(), lr=0.01)
    model.train()
    gen = torch.Generator().manual_seed(0)
    for _ in range(steps):
        idx = torch.randint(0, x.shape[0], (64,), generator=gen)
        loss = F.cross_entropy(model(x[idx]), y[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
    return model.eval()
