"""The in-memory dataset types every source returns: `ImageSet` and `DataBundle`.

Images stay uint8 `[N, C, H, W]` until a batch is drawn (4x less memory than float, and the
loader normalises whole batches at once); labels are int64 `[N]`."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from deepshrink.errors import ConfigError, DataError


@dataclass(frozen=True)
class ImageSet:
    images: torch.Tensor  # uint8 [N, C, H, W], contiguous
    labels: torch.Tensor  # int64 [N]

    def __post_init__(self) -> None:
        images, labels = self.images, self.labels
        if images.dtype != torch.uint8 or images.dim() != 4:
            raise DataError(f"images must be uint8 [N, C, H, W], got {images.dtype} {tuple(images.shape)}")
        if labels.dtype != torch.int64 or labels.shape != (images.shape[0],):
            raise DataError(
                f"labels must be int64 [{images.shape[0]}] to match the images, "
                f"got {labels.dtype} {tuple(labels.shape)}"
            )
        # Frozen dataclass: normalise layout once here so every consumer can rely on it.
        object.__setattr__(self, "images", images.contiguous())
        object.__setattr__(self, "labels", labels.contiguous())

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def take(self, indices: np.ndarray | torch.Tensor) -> ImageSet:
        index = torch.as_tensor(indices, dtype=torch.int64)
        return ImageSet(self.images.index_select(0, index), self.labels.index_select(0, index))

    def class_counts(self, num_classes: int) -> list[int]:
        return torch.bincount(self.labels, minlength=num_classes).tolist()


@dataclass(frozen=True)
class DataBundle:
    train: ImageSet
    val: ImageSet
    test: ImageSet
    classes: tuple[str, ...]
    num_classes: int
    input_size: tuple[int, int, int]  # (C, H, W)
    mean: tuple[float, ...]
    std: tuple[float, ...]
    name: str
    spec: str = field(default="")  # the spec string that reloads this bundle, for reports


def stratified_split(labels: np.ndarray, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(keep, held_out) sorted index arrays; each class gives up `fraction` of its samples.

    Per-class counts use the largest-remainder rule so the total held out is exactly
    round(fraction * N), as with scikit-learn's StratifiedShuffleSplit."""
    labels = np.asarray(labels)
    if not 0.0 <= fraction < 1.0:
        raise ConfigError(f"val_fraction must be in [0, 1), got {fraction}")
    classes, counts = np.unique(labels, return_counts=True)
    exact = counts * fraction
    take = np.floor(exact).astype(np.int64)
    short = int(round(fraction * len(labels))) - int(take.sum())
    if short > 0:
        take[np.argsort(-(exact - take), kind="stable")[:short]] += 1
    rng = np.random.default_rng(seed)
    held = [rng.permutation(np.flatnonzero(labels == c))[:k] for c, k in zip(classes, take)]
    held_out = np.sort(np.concatenate(held)) if held else np.empty(0, np.int64)
    keep = np.setdiff1d(np.arange(len(labels)), held_out, assume_unique=True)
    return keep, held_out


def channel_stats(images: torch.Tensor, chunk: int = 4096) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and std of uint8 images in [0, 1] units, in float64 chunks (no big copy)."""
    if images.shape[0] == 0:
        raise DataError("cannot compute mean/std of an empty training split")
    total = torch.zeros(images.shape[1], dtype=torch.float64)
    total_sq = torch.zeros_like(total)
    for start in range(0, images.shape[0], chunk):
        part = images[start : start + chunk].to(torch.float64).div_(255.0)
        total += part.sum(dim=(0, 2, 3))
        total_sq += part.square().sum(dim=(0, 2, 3))
    count = images.shape[0] * images.shape[2] * images.shape[3]
    mean = total / count
    std = (total_sq / count - mean.square()).clamp_min(1e-12).sqrt()
    return tuple(round(v, 6) for v in mean.tolist()), tuple(round(v, 6) for v in std.tolist())


def make_bundle(
    *,
    name: str,
    spec: str,
    train: ImageSet,
    test: ImageSet,
    classes: Sequence[str],
    val_fraction: float,
    seed: int,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
) -> DataBundle:
    """Carve a seeded, stratified validation split from train and fill in normalisation stats
    (computed on the remaining train split when not given, so val/test never leak into them)."""
    keep, held = stratified_split(train.labels.numpy(), val_fraction, seed)
    val = train.take(held)
    if len(held):  # skip a needless full copy when nothing is held out
        train = train.take(keep)
    if mean is None or std is None:
        mean, std = channel_stats(train.images)
    c, h, w = train.images.shape[1:]
    return DataBundle(
        train=train,
        val=val,
        test=test,
        classes=tuple(classes),
        num_classes=len(classes),
        input_size=(int(c), int(h), int(w)),
        mean=tuple(float(v) for v in mean),
        std=tuple(float(v) for v in std),
        name=name,
        spec=spec,
    )


def subset(imageset: ImageSet, n: int, seed: int = 0) -> ImageSet:
    """n samples drawn without replacement (all of them when n >= len), kept in source order;
    for calibration batches and smoke runs."""
    if n < 0:
        raise ConfigError(f"subset size n must be >= 0, got {n}")
    if n >= len(imageset):
        return imageset
    rng = np.random.default_rng(seed)
    return imageset.take(np.sort(rng.choice(len(imageset), size=n, replace=False)))


def describe(bundle: DataBundle) -> dict:
    """JSON-ready summary for reports: sizes, classes, normalisation, per-class train counts."""
    return {
        "name": bundle.name,
        "spec": bundle.spec,
        "input_size": list(bundle.input_size),
        "num_classes": bundle.num_classes,
        "classes": list(bundle.classes),
        "sizes": {"train": len(bundle.train), "val": len(bundle.val), "test": len(bundle.test)},
        "train_class_counts": bundle.train.class_counts(bundle.num_classes),
        "mean": list(bundle.mean),
        "std": list(bundle.std),
    }
