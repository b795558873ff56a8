"""Batch augmentation as pure tensor maths: zero-padded random crop, horizontal flip, normalise.

Everything works on a whole uint8 batch at once. Crop and flip are one `gather` over a padded
copy (the flip just reverses the column index), so a batch of 128 CIFAR images costs about a
millisecond instead of 128 Python-level transforms."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F


def crop_flip(
    images: torch.Tensor, pad: int, top: torch.Tensor, left: torch.Tensor, flip: torch.Tensor
) -> torch.Tensor:
    """Crop each image of `[B, C, H, W]` at (top, left) in its zero-padded copy and mirror the
    ones where `flip` is true. Offsets are in [0, 2 * pad]; the output keeps the input's shape."""
    b, c, h, w = images.shape
    padded = F.pad(images, (pad, pad, pad, pad)) if pad else images
    wp = w + 2 * pad
    rows = top.view(b, 1) + torch.arange(h, device=images.device)
    cols = left.view(b, 1) + torch.arange(w, device=images.device)
    cols = torch.where(flip.view(b, 1), cols.flip(1), cols)
    index = (rows.unsqueeze(2) * wp + cols.unsqueeze(1)).view(b, 1, h * w).expand(b, c, h * w)
    return padded.reshape(b, c, -1).gather(2, index).view(b, c, h, w)


def random_crop_flip(images: torch.Tensor, pad: int, flip: bool, generator: torch.Generator) -> torch.Tensor:
    """Draws the offsets and flip mask from `generator` (on CPU, so a seed means the same batch on
    every device) and applies `crop_flip`."""
    b = images.shape[0]
    top = torch.randint(0, 2 * pad + 1, (b,), generator=generator)
    left = torch.randint(0, 2 * pad + 1, (b,), generator=generator)
    mirror = torch.rand(b, generator=generator) < 0.5 if flip else torch.zeros(b, dtype=torch.bool)
    device = images.device
    return crop_flip(images, pad, top.to(device), left.to(device), mirror.to(device))


def hflip(images: torch.Tensor) -> torch.Tensor:
    return images.flip(-1)


def normalizer(mean: Sequence[float], std: Sequence[float], device: torch.device | str = "cpu"):
    """(scale, shift) of shape [1, C, 1, 1] so that `uint8 * scale + shift == (x / 255 - mean) / std`
    in one fused multiply-add."""
    mean_t = torch.tensor(mean, dtype=torch.float32, device=device).view(1, -1, 1, 1)
    std_t = torch.tensor(std, dtype=torch.float32, device=device).view(1, -1, 1, 1)
    return 1.0 / (255.0 * std_t), -mean_t / std_t


def normalize(images: torch.Tensor, scale: torch.Tensor, shift: torch.Tensor) -> torch.Tensor:
    """uint8 batch -> float32 normalised; the float copy keeps the input's memory format."""
    return torch.addcmul(shift, images.float(), scale)
