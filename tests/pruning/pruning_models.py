"""Test-only models covering the channel couplings the pruning graph must model: an option-A
CIFAR ResNet (zero-padding shortcut), concat/chunk branches, an SE block, grouped and depthwise
convolutions with GroupNorm, a flatten before linear layers, and broken models for the errors."""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from deepshrink.pruning import register_channel_pad


class PadShortcut(nn.Module):
    """Option A: subsample and zero-pad channels; `front`/`back` are the pad widths."""

    def __init__(self, front: int, back: int) -> None:
        super().__init__()
        self.front, self.back = front, back

    def forward(self, x):
        return F.pad(x[:, :, ::2, ::2], (0, 0, 0, 0, self.front, self.back))


register_channel_pad(PadShortcut, "front", "back")


class BasicBlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        pad = (cout - cin) // 2
        self.shortcut = PadShortcut(pad, cout - cin - pad) if stride != 1 or cin != cout else nn.Identity()

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


class TinyResNetA(nn.Module):
    """CIFAR ResNet option A with `n` blocks per stage (n=5 is ResNet-32)."""

    def __init__(self, n: int = 1, num_classes: int = 10, widths=(16, 32, 64)) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, widths[0], 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(widths[0])
        blocks, cin = [], widths[0]
        for stage, width in enumerate(widths):
            layer = []
            for i in range(n):
                layer.append(BasicBlock(cin, width, 2 if stage and i == 0 else 1))
                cin = width
            blocks.append(nn.Sequential(*layer))
        self.layer1, self.layer2, self.layer3 = blocks
        self.linear = nn.Linear(widths[-1], num_classes)

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.layer3(self.layer2(self.layer1(out)))
        out = F.avg_pool2d(out, out.size()[3])
        return self.linear(out.view(out.size(0), -1))


class ConcatNet(nn.Module):
    """Inception-like branches joined by cat, a chunk, and a dense (DenseNet-style) concat."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU())
        self.b1 = nn.Conv2d(16, 16, 1)
        self.b2 = nn.Sequential(nn.Conv2d(16, 24, 3, padding=1), nn.BatchNorm2d(24), nn.ReLU())
        self.bn = nn.BatchNorm2d(40)
        self.grow = nn.Conv2d(40, 16, 3, padding=1)
        self.mix = nn.Conv2d(56, 32, 1)
        self.gate = nn.Conv2d(16, 32, 1)
        self.fc = nn.Linear(16, 5)

    def forward(self, x):
        x = self.stem(x)
        x = torch.cat([self.b1(x), self.b2(x)], dim=1)
        x = F.relu(self.bn(x))
        x = torch.cat([x, self.grow(x)], 1)
        a, b = torch.chunk(self.mix(x), 2, dim=1)
        x = a * torch.sigmoid(b) + self.gate(F.max_pool2d(x[:, :16], 1)).chunk(2, 1)[0]
        return self.fc(F.adaptive_avg_pool2d(x, 1).flatten(1))


class SEBlock(nn.Module):
    def __init__(self, channels: int, reduction: int = 4) -> None:
        super().__init__()
        self.fc1 = nn.Linear(channels, channels // reduction)
        self.fc2 = nn.Linear(channels // reduction, channels)

    def forward(self, x):
        b, c = x.size()[:2]
        s = x.mean((2, 3))
        s = torch.sigmoid(self.fc2(F.relu(self.fc1(s))))
        return x * s.view(b, c, 1, 1)


class SENet(nn.Module):
    """Residual block with squeeze-excitation: the SE scale is coupled to the channels it scales."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 32, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(32)
        self.conv2 = nn.Conv2d(32, 32, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(32)
        self.se = SEBlock(32)
        self.conv3 = nn.Conv2d(32, 48, 3, stride=2, padding=1)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(48, 10)

    def forward(self, x):
        x = F.relu(self.bn1(self.conv1(x)))
        x = F.relu(x + self.se(self.bn2(self.conv2(x))))
        x = F.relu(self.conv3(x))
        return self.fc(torch.flatten(self.pool(x), 1))


class GroupedNet(nn.Module):
    """Grouped (aligned), depthwise, depthwise-multiplier convolutions and GroupNorm, PReLU."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 32, 3, padding=1)
        self.bn1 = nn.BatchNorm2d(32)
        self.grouped = nn.Conv2d(32, 48, 3, padding=1, groups=4)
        self.bn2 = nn.BatchNorm2d(48)
        self.act = nn.PReLU(48)
        self.dw = nn.Conv2d(48, 48, 3, padding=1, groups=48, bias=False)
        self.dw_mult = nn.Conv2d(48, 96, 3, padding=1, groups=48, bias=False)
        self.bn3 = nn.BatchNorm2d(96)
        self.pw = nn.Conv2d(96, 32, 1)
        self.gn = nn.GroupNorm(8, 32)
        self.fc = nn.Linear(32, 10)

    def forward(self, x):
        x = F.relu(self.bn1(self.conv1(x)))
        x = self.act(self.bn2(self.grouped(x)))
        x = F.relu6(self.bn3(self.dw_mult(self.dw(x))))
        x = F.hardswish(self.gn(self.pw(x)))
        return self.fc(x.mean([2, 3]))


class FlattenNet(nn.Module):
    """VGG-like head: the last feature map is flattened into a linear layer (channel x spatial)."""

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(inplace=True), nn.MaxPool2d(2),
            nn.Conv2d(16, 32, 3, padding=1), nn.BatchNorm2d(32), nn.ReLU(inplace=True), nn.MaxPool2d(4),
        )
        self.classifier = nn.Sequential(nn.Flatten(), nn.Linear(32 * 4 * 4, 64), nn.ReLU(), nn.Dropout(0.5),
                                        nn.Linear(64, 10))

    def forward(self, x):
        return self.classifier(self.features(x))


class ControlFlowNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3)

    def forward(self, x):
        if x.sum() > 0:  # data-dependent: not traceable
            return self.conv(x)
        return x


class RollNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3)

    def forward(self, x):
        return torch.roll(self.conv(x), 1, dims=1)


class SplitNet(nn.Module):
    """A split by constant sizes pins the channels it splits."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 24, 3, padding=1)
        self.head = nn.Conv2d(8, 16, 1)
        self.fc = nn.Linear(16 + 16, 10)

    def forward(self, x):
        a, b = torch.split(self.conv(x), [8, 16], dim=1)
        return self.fc(torch.cat([self.head(a), b], 1).mean((2, 3)))


def calibration(batches: int = 2, classes: int = 10, size: int = 32) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """(images, labels) batches for the data-driven criteria."""
    gen = torch.Generator().manual_seed(2)
    return [(torch.randn(4, 3, size, size, generator=gen), torch.randint(0, classes, (4,), generator=gen))
            for _ in range(batches)]


def resnet_a(num_classes: int = 10) -> TinyResNetA:
    """Factory for `create_model("pruning_models:resnet_a")` (spec, save and reload)."""
    return TinyResNetA(1, num_classes)


PRUNABLE = {
    "resnet_a": lambda: TinyResNetA(1),
    "concat": ConcatNet,
    "se": SENet,
    "grouped": GroupedNet,
    "flatten": FlattenNet,
}
