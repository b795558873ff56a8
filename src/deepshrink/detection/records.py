"""What a format reader returns before any image is decoded: per split, one `Record` per image
(its boxes and class ids), the class names, and the reported skips (degenerate boxes, crowds).

Readers check everything that can be checked from the label files alone, so a bad label fails in
a second instead of after decoding thousands of images."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import numpy as np

from deepshrink.errors import DataError

log = logging.getLogger("deepshrink.detection")

SPLITS = ("train", "val", "test")
SPLIT_ALIASES = {"train": "train", "training": "train", "val": "val", "valid": "val", "validation": "val",
                 "test": "test", "testing": "test"}


def split_of(folder: str) -> str | None:
    """The split a folder name stands for ('valid' -> 'val', 'train2017' -> 'train'), or None."""
    name = folder.lower().rstrip("0123456789")
    return SPLIT_ALIASES.get(name)


@dataclass
class Record:
    image: str  # the image's path inside the source
    boxes: np.ndarray  # float32 [n, 4] (x1, y1, x2, y2): fractions of the image when `normalized`, else pixels
    labels: np.ndarray  # int64 [n]
    origin: str  # the label file, for messages
    normalized: bool = False

    def __post_init__(self) -> None:
        self.boxes = np.asarray(self.boxes, np.float32).reshape(-1, 4)
        self.labels = np.asarray(self.labels, np.int64).reshape(-1)


@dataclass
class Parsed:
    classes: list[str]
    splits: dict[str, list[Record]]
    skipped: list[str] = field(default_factory=list)  # "file: reason", reported once per load


class Skips:
    """Collects reported skips; `degenerate` is the common case (zero or negative width/height)."""

    def __init__(self) -> None:
        self.items: list[str] = []

    def add(self, where: str, reason: str) -> None:
        self.items.append(f"{where}: {reason}")

    def degenerate(self, where: str, box: tuple[float, ...]) -> None:
        shown = ", ".join(f"{v:g}" for v in box)
        self.add(where, f"skipped a degenerate box ({shown}): zero or negative width or height")


def report(skipped: list[str], name: str) -> None:
    """Log every skip by file (a user expects to hear about dirty labels, not to crash on them)."""
    if skipped:
        log.warning("%s: skipped %d annotation(s):\n  %s", name, len(skipped), "\n  ".join(skipped))


def check_classes(names: list[str], where: str) -> list[str]:
    if not names:
        raise DataError(f"{where}: no class names")
    if len(set(names)) != len(names):
        duplicate = next(n for n in names if names.count(n) > 1)
        raise DataError(f"{where}: class name '{duplicate}' appears twice")
    return names


def require_splits(splits: dict[str, list[Record]], where: str, layout: str) -> dict[str, list[Record]]:
    """Train and test are required; a missing val split is carved from train later."""
    for split in ("train", "test"):
        if not splits.get(split):
            found = ", ".join(s for s in SPLITS if splits.get(s)) or "none"
            raise DataError(f"{where}: no '{split}' split with images (found: {found}); expected {layout}")
    return {s: sorted(splits.get(s, []), key=lambda r: r.image) for s in SPLITS}
