"""`load_detection(spec)`: detection datasets from `yolo:PATH`, `voc:PATH` or `coco:PATH` (a
directory or a .tar/.tar.gz), letterboxed to a fixed square, decoded once and cached as arrays
exactly like the classification data layer (`deepshrink.data.cache`).

A split is a `DetectionSet`: uint8 images [N, 3, S, S] and a padded target tensor [N, M, 5] of
(class, x1, y1, x2, y2) in letterboxed pixels, class -1 marking padding (M = most boxes in one
image). It exposes the padded targets as `labels` too, so the engine's `BatchLoader` batches it
unchanged: images and targets are index-selected together."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path

import numpy as np
import torch

from deepshrink.data import cache
from deepshrink.detection.coco import read_coco
from deepshrink.detection.letterbox import decode_split
from deepshrink.detection.models import IMAGENET_MEAN, IMAGENET_STD
from deepshrink.detection.records import SPLITS, Parsed, report
from deepshrink.detection.sources import Source
from deepshrink.detection.voc import read_voc
from deepshrink.detection.yolo import read_yolo
from deepshrink.errors import ConfigError, DataError, close_matches

log = logging.getLogger("deepshrink.detection")

ACCEPTED = "yolo:PATH, voc:PATH or coco:PATH (a folder or a .tar/.tar.gz archive)"
FORMAT_VERSION = 1


class DetectionScheme(str, Enum):
    YOLO = "yolo"
    VOC = "voc"
    COCO = "coco"


READERS: dict[DetectionScheme, Callable[[Source], Parsed]] = {
    DetectionScheme.YOLO: read_yolo,
    DetectionScheme.VOC: read_voc,
    DetectionScheme.COCO: read_coco,
}


def is_detection_spec(spec: str | None) -> bool:
    """Whether a data spec names detection data (yolo:, voc:, coco:)."""
    return spec is not None and str(spec).partition(":")[0].strip().lower() in {s.value for s in DetectionScheme}


@dataclass(frozen=True)
class DetectionSpec:
    scheme: DetectionScheme
    path: Path

    @classmethod
    def parse(cls, text: str) -> DetectionSpec:
        head, _, rest = str(text).partition(":")
        try:
            scheme = DetectionScheme(head.strip().lower())
        except ValueError:
            hint = close_matches(head.strip().lower(), [s.value for s in DetectionScheme])
            raise DataError(f"unknown detection data spec '{text}'{hint}; accepted: {ACCEPTED}") from None
        if not rest.strip():
            raise DataError(f"data spec '{text}' needs a path after '{scheme.value}:'; accepted: {ACCEPTED}")
        path = Path(os.path.expanduser(rest.strip()))
        if not path.exists():
            raise DataError(f"{path}: not found (data spec '{text}')")
        return cls(scheme, path)

    def __str__(self) -> str:
        return f"{self.scheme.value}:{self.path}"


@dataclass(frozen=True)
class DetectionSet:
    images: torch.Tensor  # uint8 [N, 3, S, S]
    targets: torch.Tensor  # float32 [N, M, 5]: class, x1, y1, x2, y2; class -1 = padding
    meta: torch.Tensor  # float32 [N, 6]: original w, h, scale x, scale y, pad x, pad y
    names: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        n = self.images.shape[0]
        if self.images.dtype != torch.uint8 or self.images.dim() != 4:
            raise DataError(f"images must be uint8 [N, C, H, W], got {self.images.dtype} {tuple(self.images.shape)}")
        if self.targets.dim() != 3 or self.targets.shape[0] != n or self.targets.shape[2] != 5:
            raise DataError(f"targets must be [{n}, M, 5], got {tuple(self.targets.shape)}")

    @property
    def labels(self) -> torch.Tensor:
        """The padded targets, under the name the engine's BatchLoader reads."""
        return self.targets

    def __len__(self) -> int:
        return int(self.images.shape[0])

    def take(self, indices) -> DetectionSet:
        index = torch.as_tensor(indices, dtype=torch.int64)
        names = tuple(self.names[i] for i in index.tolist()) if self.names else ()
        return DetectionSet(self.images[index], self.targets[index], self.meta[index], names)

    def boxes(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(boxes [n, 4], classes [n]) of image i, padding removed."""
        row = self.targets[i]
        keep = row[:, 0] >= 0
        return row[keep, 1:], row[keep, 0].long()

    @classmethod
    def from_arrays(cls, arrays: dict[str, np.ndarray]) -> DetectionSet:
        counts = arrays["counts"]
        width = max(int(counts.max()) if len(counts) else 0, 1)
        targets = np.full((len(counts), width, 5), -1.0, np.float32)
        offsets = np.concatenate([[0], np.cumsum(counts)])
        for i, (start, end) in enumerate(zip(offsets[:-1], offsets[1:])):
            targets[i, : end - start, 0] = arrays["classes"][start:end]
            targets[i, : end - start, 1:] = arrays["boxes"][start:end]
        names = tuple(str(n) for n in arrays["names"])
        return cls(torch.from_numpy(arrays["images"]), torch.from_numpy(targets), torch.from_numpy(arrays["meta"]), names)


@dataclass(frozen=True)
class DetectionBundle:
    train: DetectionSet
    val: DetectionSet
    test: DetectionSet
    classes: tuple[str, ...]
    num_classes: int
    input_size: tuple[int, int, int]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    name: str
    spec: str = ""
    skipped: tuple[str, ...] = field(default=())  # reported annotations, "file: reason"
    task: str = "detection"


def _decode(source: Source, scheme: DetectionScheme, size: int) -> dict[str, np.ndarray]:
    parsed = READERS[scheme](source)
    arrays: dict[str, np.ndarray] = {"classes": np.array(parsed.classes), "skipped": np.array(parsed.skipped, dtype=str)}
    for split in SPLITS:
        records = parsed.splits.get(split, [])
        if records:
            for key, value in decode_split(source, records, size).items():
                arrays[f"{split}_{key}"] = value
    return arrays


def _carve(train: DetectionSet, fraction: float, seed: int) -> tuple[DetectionSet, DetectionSet]:
    order = np.random.default_rng(seed).permutation(len(train))
    held = int(round(fraction * len(train)))
    return train.take(np.sort(order[held:])), train.take(np.sort(order[:held]))


def load_detection(
    spec: str | DetectionSpec,
    *,
    image_size: int = 320,
    val_fraction: float = 0.1,
    seed: int = 0,
    cache_dir: str | os.PathLike | None = None,
) -> DetectionBundle:
    """Load a detection dataset as letterboxed uint8 splits. A dataset without a val split gives
    up a seeded `val_fraction` of train; `image_size` must be a multiple of 32 (the coarsest
    detector stride). Annotations skipped on the way (degenerate boxes, crowds) are logged by file
    and listed in `bundle.skipped`."""
    parsed = spec if isinstance(spec, DetectionSpec) else DetectionSpec.parse(spec)
    if isinstance(image_size, bool) or not isinstance(image_size, int) or image_size < 32 or image_size % 32:
        raise ConfigError(f"image_size must be a positive multiple of 32, got {image_size!r}")
    if not 0.0 <= val_fraction < 1.0:
        raise ConfigError(f"val_fraction must be in [0, 1), got {val_fraction}")
    source = Source(parsed.path)
    key = cache.cache_key(kind=f"detection-{parsed.scheme.value}", source=source.fingerprint(), image_size=image_size,
                          format=FORMAT_VERSION)
    entry = cache.cache_path(Path(cache_dir).expanduser() if cache_dir else cache.default_cache_dir(), source.stem, key)
    arrays = cache.load_arrays(entry)
    if arrays is None:
        arrays = _decode(source, parsed.scheme, image_size)
        cache.save_arrays(entry, arrays)
        log.info("cached %s at %s", parsed.path, entry)
    skipped = tuple(str(s) for s in arrays["skipped"])
    report(list(skipped), str(parsed.path))
    sets = {s: DetectionSet.from_arrays({k[len(s) + 1 :]: v for k, v in arrays.items() if k.startswith(f"{s}_")})
            for s in SPLITS if f"{s}_images" in arrays}
    if "val" not in sets:
        sets["train"], sets["val"] = _carve(sets["train"], val_fraction, seed)
    classes = tuple(str(c) for c in arrays["classes"])
    return DetectionBundle(
        train=sets["train"], val=sets["val"], test=sets["test"], classes=classes, num_classes=len(classes),
        input_size=(3, image_size, image_size), mean=IMAGENET_MEAN, std=IMAGENET_STD, name=source.stem,
        spec=str(parsed), skipped=skipped,
    )
