"""`load_data(spec)`: one entry point for every dataset, named by a spec string.

The spec is parsed and checked into a typed `DataSpec` first (unknown scheme, missing path:
one error listing the accepted forms), then dispatched on its scheme to a source loader that
returns train/test arrays; `make_bundle` carves the validation split and fills in mean/std."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum
from pathlib import Path

import numpy as np
import torch

from deepshrink.data.bundle import DataBundle, ImageSet, make_bundle, stratified_split
from deepshrink.data.cifar import load_cifar10
from deepshrink.data.imagefolder import load_imagefolder
from deepshrink.errors import ConfigError, DataError, close_matches
from deepshrink.models import CIFAR_MEAN, CIFAR_STD

ACCEPTED = (
    "digits (scikit-learn's bundled 8x8 digits), cifar10:DIR (the cifar-10-batches-py folder), "
    "imagefolder:PATH (a folder or .tar/.tar.gz with train/<class>/ and test/<class>/)"
)
DIGITS_TEST_FRACTION = 0.2
DIGITS_TEST_SEED = 0  # fixed, so the test split never moves when the user changes `seed`


class DataScheme(str, Enum):
    DIGITS = "digits"
    CIFAR10 = "cifar10"
    IMAGEFOLDER = "imagefolder"


@dataclass(frozen=True)
class DataSpec:
    scheme: DataScheme
    path: Path | None = None

    @classmethod
    def parse(cls, text: str) -> DataSpec:
        head, sep, rest = str(text).partition(":")
        try:
            scheme = DataScheme(head.strip().lower())
        except ValueError:
            hint = close_matches(head.strip().lower(), [s.value for s in DataScheme])
            raise DataError(f"unknown data spec '{text}'{hint}; accepted: {ACCEPTED}") from None
        if scheme is DataScheme.DIGITS:
            if rest:
                raise DataError(f"data spec '{text}': digits takes no path; accepted: {ACCEPTED}")
            return cls(scheme)
        if not rest.strip():
            raise DataError(f"data spec '{text}' needs a path after '{scheme.value}:'; accepted: {ACCEPTED}")
        path = Path(os.path.expanduser(rest.strip()))
        if not path.exists():
            raise DataError(f"{path}: not found (data spec '{text}'); accepted: {ACCEPTED}")
        return cls(scheme, path)

    def __str__(self) -> str:
        return self.scheme.value if self.path is None else f"{self.scheme.value}:{self.path}"


@dataclass(frozen=True)
class _Options:
    cache_dir: Path | None
    image_size: tuple[int, int] | None


def _digits(spec: DataSpec, opts: _Options) -> dict:
    from sklearn.datasets import load_digits  # bundled with scikit-learn: no download

    digits = load_digits()
    # Pixel values are 0..16; scale to the 0..255 every other source uses.
    images = np.rint(digits.images * (255.0 / 16.0)).astype(np.uint8)[:, None]
    labels = digits.target.astype(np.int64)
    full = ImageSet(torch.from_numpy(images), torch.from_numpy(labels))
    train_idx, test_idx = stratified_split(labels, DIGITS_TEST_FRACTION, DIGITS_TEST_SEED)
    classes = [str(c) for c in range(10)]
    return {"name": "digits", "train": full.take(train_idx), "test": full.take(test_idx), "classes": classes}


def _cifar10(spec: DataSpec, opts: _Options) -> dict:
    train, test, classes = load_cifar10(spec.path)
    return {"name": "cifar10", "train": train, "test": test, "classes": classes, "mean": CIFAR_MEAN, "std": CIFAR_STD}


def _imagefolder(spec: DataSpec, opts: _Options) -> dict:
    name, train, test, classes = load_imagefolder(spec.path, cache_dir=opts.cache_dir, image_size=opts.image_size)
    out = {"name": name, "train": train, "test": test, "classes": classes}
    if tuple(train.images.shape[1:]) == (3, 32, 32):  # CIFAR-like: match the zoo checkpoints
        out.update(mean=CIFAR_MEAN, std=CIFAR_STD)
    return out


_SOURCES: dict[DataScheme, Callable[[DataSpec, _Options], dict]] = {
    DataScheme.DIGITS: _digits,
    DataScheme.CIFAR10: _cifar10,
    DataScheme.IMAGEFOLDER: _imagefolder,
}
_RESIZABLE = {DataScheme.IMAGEFOLDER}


def _image_size(value: int | tuple[int, int] | None) -> tuple[int, int] | None:
    if value is None:
        return None
    size = (value, value) if isinstance(value, int) else tuple(value)
    if len(size) != 2 or not all(isinstance(v, int) and v > 0 for v in size):
        raise ConfigError(f"image_size must be a positive int or (H, W), got {value!r}")
    return size


def load_data(
    spec: str | DataSpec,
    *,
    val_fraction: float = 0.1,
    seed: int = 0,
    cache_dir: str | os.PathLike | None = None,
    image_size: int | tuple[int, int] | None = None,
) -> DataBundle:
    """Load a dataset into memory as uint8 train/val/test splits.

    `val_fraction` of train (seeded, stratified) becomes `val`, so tuning never touches test.
    `image_size` (imagefolder only) resizes every image on decode; without it, images of
    differing sizes are an error naming the odd file."""
    parsed = spec if isinstance(spec, DataSpec) else DataSpec.parse(spec)
    if not 0.0 <= val_fraction < 1.0:
        raise ConfigError(f"val_fraction must be in [0, 1), got {val_fraction}")
    size = _image_size(image_size)
    if size is not None and parsed.scheme not in _RESIZABLE:
        raise ConfigError(f"image_size applies to imagefolder data only, not '{parsed}'")
    opts = _Options(Path(cache_dir).expanduser() if cache_dir is not None else None, size)
    source = _SOURCES[parsed.scheme](parsed, opts)
    return make_bundle(spec=str(parsed), val_fraction=val_fraction, seed=seed, **source)
