"""Box-aware augmentation on whole batches: horizontal flip, a random affine per image (scale
jitter; a zoom above 1 is a random crop) and 2x2 mosaic, on normalised float images [B, C, H, W]
and padded targets [B, M, 5] (class, x1, y1, x2, y2 in pixels; class -1 = padding).

The boxes go through exactly the map the pixels go through: one `affine_grid` + `grid_sample`
call per batch samples output pixel centre x at input (x - tx) / s, and the box corners move by
x -> s * x + tx (then W - x under a flip). Boxes are clipped to the image and dropped (class -1)
when less than `min_visible` of their area, or a side under `min_size` pixels, remains."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

from deepshrink.detection.config import AugmentConfig
from deepshrink.detection.primitives import box_area
from deepshrink.errors import ConfigError


def _fill(images: torch.Tensor, fill: Sequence[float] | float) -> torch.Tensor:
    value = torch.as_tensor(fill, dtype=images.dtype, device=images.device)
    return value.view(1, -1, 1, 1) if value.dim() else value


def hflip(images: torch.Tensor, targets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    width = images.shape[-1]
    out = targets.clone()
    valid = targets[..., 0] >= 0
    out[..., 1] = torch.where(valid, width - targets[..., 3], targets[..., 1])
    out[..., 3] = torch.where(valid, width - targets[..., 1], targets[..., 3])
    return images.flip(-1), out


def affine(
    images: torch.Tensor,
    targets: torch.Tensor,
    scale: torch.Tensor,
    shift: torch.Tensor,
    flip: torch.Tensor,
    *,
    fill: Sequence[float] | float = 0.0,
    min_visible: float = 0.3,
    min_size: float = 2.0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Zoom each image by scale[b] about the top-left corner, shift it by shift[b] = (tx, ty)
    pixels, then mirror it where flip[b]; uncovered pixels get `fill`."""
    b, _, h, w = images.shape
    scale, shift, flip = scale.to(images), shift.to(images), flip.to(images.device)
    sign = torch.where(flip, -1.0, 1.0).to(images)
    # Normalised coords (align_corners=False): n = 2 x / W - 1. Output n_o -> input n_i is
    # n_i = sign * n_o / s + (1 - s - 2 t / W) / s  (derived from x_i = (x_o' - t) / s).
    theta = torch.zeros(b, 2, 3, dtype=images.dtype, device=images.device)
    theta[:, 0, 0] = sign / scale
    theta[:, 0, 2] = (1 - scale - 2 * shift[:, 0] / w) / scale
    theta[:, 1, 1] = 1 / scale
    theta[:, 1, 2] = (1 - scale - 2 * shift[:, 1] / h) / scale
    grid = F.affine_grid(theta, list(images.shape), align_corners=False)
    value = _fill(images, fill)
    out = F.grid_sample(images - value, grid, mode="bilinear", padding_mode="zeros", align_corners=False) + value

    boxes = targets[..., 1:] * scale.view(b, 1, 1) + shift.repeat(1, 2).view(b, 1, 4)
    mirrored = torch.stack([w - boxes[..., 2], boxes[..., 1], w - boxes[..., 0], boxes[..., 3]], dim=-1)
    boxes = torch.where(flip.view(b, 1, 1), mirrored, boxes)
    return out, _clip(targets, boxes, h, w, min_visible, min_size)


def _clip(targets: torch.Tensor, boxes: torch.Tensor, h: int, w: int, min_visible: float, min_size: float) -> torch.Tensor:
    limit = torch.tensor([w, h, w, h], dtype=boxes.dtype, device=boxes.device)
    clipped = torch.minimum(boxes.clamp_min(0), limit)
    sides = clipped[..., 2:] - clipped[..., :2]
    keep = (targets[..., 0] >= 0) & (box_area(clipped) >= min_visible * box_area(boxes)) & (sides >= min_size).all(-1)
    keep &= box_area(clipped) > 0
    out = torch.cat([targets[..., :1], clipped], dim=-1)
    return torch.where(keep.unsqueeze(-1), out, torch.tensor([-1.0, 0, 0, 0, 0], device=out.device, dtype=out.dtype))


def mosaic(images: torch.Tensor, targets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Image b becomes a 2x2 grid of images b, b+1, b+2, b+3 (mod B), each halved (2x2 average,
    so a box's corners halve exactly); targets grow to [B, 4M, 5]."""
    b, _, h, w = images.shape
    if h % 2 or w % 2:
        raise ConfigError(f"mosaic needs even image sides, got {h}x{w}")
    half = F.avg_pool2d(images, 2)
    tiles = [torch.roll(half, -k, dims=0) for k in range(4)]
    out = torch.cat([torch.cat(tiles[:2], dim=3), torch.cat(tiles[2:], dim=3)], dim=2)
    parts = []
    for k, (dx, dy) in enumerate(((0, 0), (w / 2, 0), (0, h / 2), (w / 2, h / 2))):
        rolled = torch.roll(targets, -k, dims=0)
        boxes = rolled[..., 1:] * 0.5 + torch.tensor([dx, dy, dx, dy], dtype=rolled.dtype, device=rolled.device)
        parts.append(torch.where(rolled[..., :1] >= 0, torch.cat([rolled[..., :1], boxes], -1), rolled))
    return out, torch.cat(parts, dim=1)


class BatchAugment:
    """Draws every random choice from a CPU generator, so a seed gives the same batch anywhere."""

    def __init__(self, config: AugmentConfig | dict | None = None, fill: Sequence[float] | float = 0.0) -> None:
        self.config = AugmentConfig.coerce(config)
        self.fill = fill

    def __call__(
        self, images: torch.Tensor, targets: torch.Tensor, generator: torch.Generator
    ) -> tuple[torch.Tensor, torch.Tensor]:
        cfg, (b, _, h, w) = self.config, images.shape
        if cfg.mosaic > 0:
            chosen = (torch.rand(b, generator=generator) < cfg.mosaic).to(images.device)
            tiled, tiled_targets = mosaic(images, targets)
            padded = torch.full_like(tiled_targets, -1.0)
            padded[:, : targets.shape[1]] = targets
            images = torch.where(chosen.view(b, 1, 1, 1), tiled, images)
            targets = torch.where(chosen.view(b, 1, 1), tiled_targets, padded)
        low, high = torch.log(torch.tensor(cfg.scale, dtype=torch.float64))
        scale = torch.exp(low + (high - low) * torch.rand(b, generator=generator, dtype=torch.float64)).float()
        size = torch.tensor([w, h], dtype=torch.float32)
        # Offsets place the zoomed image anywhere it still covers (s > 1: a random crop) or anywhere
        # inside the canvas (s < 1), widened by +-translate of the side.
        spare = size * (1 - scale.view(b, 1))
        lo = torch.minimum(spare, torch.zeros(())) - cfg.translate * size
        hi = torch.maximum(spare, torch.zeros(())) + cfg.translate * size
        shift = lo + (hi - lo) * torch.rand(b, 2, generator=generator)
        flip = torch.rand(b, generator=generator) < cfg.flip
        return affine(images, targets, scale, shift, flip, fill=self.fill, min_visible=cfg.min_visible,
                      min_size=cfg.min_size)
