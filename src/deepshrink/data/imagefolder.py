"""`imagefolder:PATH`: class-per-folder images from a directory or a .tar/.tar.gz archive.

Layout: `train/<class>/*` and `test/<class>/*`, at the top or under one folder (as in
`cifar10-jpeg/train/airplane/0000.jpg`). Classes are sorted by name. Images are decoded once and
cached as uint8 arrays keyed by a fingerprint of the source; later loads read the cache only."""

from __future__ import annotations

import collections
import logging
import os
import tarfile
import zlib
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch

from deepshrink.data import cache
from deepshrink.data.bundle import ImageSet
from deepshrink.data.decode import Item, decode_all
from deepshrink.errors import DataError

log = logging.getLogger(__name__)

IMAGE_EXTENSIONS = {".jpg", ".jpeg", ".png", ".bmp", ".ppm", ".pgm", ".gif", ".webp", ".tif", ".tiff"}
SPLITS = ("train", "test")
_ARCHIVE_SUFFIXES = (".tar.gz", ".tgz", ".tar.bz2", ".tar.xz", ".tar")
LAYOUT = "train/<class>/<image> and test/<class>/<image> (optionally under one top-level folder)"


def _place(rel: str) -> tuple[str, str, str] | None:
    """(prefix, split, class) for an image under <prefix>/<split>/<class>/, else None."""
    parts = rel.split("/")
    if len(parts) < 3 or parts[-3] not in SPLITS or parts[-1].startswith("."):
        return None  # also skips hidden files such as macOS "._x.jpg" resource forks
    if os.path.splitext(parts[-1])[1].lower() not in IMAGE_EXTENSIONS:
        return None
    return "/".join(parts[:-3]), parts[-3], parts[-2]


def _layout(places: list[tuple[str, str, str]], where: Path) -> tuple[str, list[str]]:
    """The common prefix and sorted class names; DataError naming what is missing."""
    if not places:
        raise DataError(f"{where}: no images found; expected {LAYOUT}")
    prefixes = sorted({p[0] for p in places})
    if len(prefixes) > 1:
        raise DataError(f"{where}: train/ and test/ found under several folders ({', '.join(prefixes)}); expected one")
    found = {p[1] for p in places}
    for split in SPLITS:
        if split not in found:
            base = f"{prefixes[0]}/" if prefixes[0] else ""
            raise DataError(f"{where}: missing {base}{split}/ (found only {base}{found.pop()}/); expected {LAYOUT}")
    classes = sorted({p[2] for p in places if p[1] == "train"})
    extra = sorted({p[2] for p in places if p[1] == "test"} - set(classes))
    if extra:
        raise DataError(f"{where}: test/{extra[0]}/ has no matching train/{extra[0]}/ class folder")
    return prefixes[0], classes


def _dir_files(root: Path) -> list[str]:
    rels = []
    for folder, dirs, files in os.walk(root):
        dirs.sort()
        rel_folder = Path(folder).relative_to(root).as_posix()
        rels += [f if rel_folder == "." else f"{rel_folder}/{f}" for f in files]
    return [r for r in rels if _place(r) is not None]


def _archive_items(path: Path) -> Iterator[Item]:
    """Streams (member name, bytes) of candidate images in one sequential pass over the archive."""
    try:
        with tarfile.open(path, "r:*") as tar:
            for member in tar:
                name = member.name.removeprefix("./")
                if member.isfile() and _place(name) is not None:
                    yield name, tar.extractfile(member).read()
    except (tarfile.TarError, OSError, EOFError, zlib.error) as exc:
        raise DataError(f"{path}: not a readable .tar/.tar.gz archive ({exc})") from None


def _check_sizes(names: list[str], arrays: list[np.ndarray], where: str) -> tuple[int, int, int]:
    """(C, H, W) shared by all images; the first image of another size raises DataError naming it.
    Gray images join colour ones as RGB, so C is 3 if any image is in colour."""
    (h, w), _ = collections.Counter(a.shape[:2] for a in arrays).most_common(1)[0]
    for name, a in zip(names, arrays):
        if a.shape[:2] != (h, w):
            raise DataError(
                f"{where}{name}: image is {a.shape[1]}x{a.shape[0]}, expected {w}x{h} like the others "
                "(pass image_size=(H, W) to resize)"
            )
    return (3 if any(a.ndim == 3 for a in arrays) else 1), h, w


def _stack(arrays: list[np.ndarray], shape: tuple[int, int, int]) -> np.ndarray:
    c = shape[0]
    hwc = np.stack([a if a.ndim == 3 else np.repeat(a[:, :, None], c, axis=2) for a in arrays])
    return np.ascontiguousarray(hwc.transpose(0, 3, 1, 2))


def _decode_source(path: Path, rels: list[str] | None, image_size: tuple[int, int] | None) -> dict[str, np.ndarray]:
    """Decode a directory (its candidate files `rels`) or, when rels is None, an archive."""
    if rels is not None:
        _layout([_place(r) for r in rels], path)  # fail before decoding anything
        where = f"{path}/"
        items = ((r, str(path / r)) for r in rels)
        names, arrays = decode_all(items, size=image_size, label=path.name, where=where, total=len(rels))
    else:
        where = f"{path}:"
        names, arrays = decode_all(_archive_items(path), size=image_size, label=path.name, where=where)
    places = [_place(n) for n in names]
    prefix, classes = _layout(places, path)
    shape = _check_sizes(names, arrays, where)
    index = {c: i for i, c in enumerate(classes)}
    out: dict[str, np.ndarray] = {"classes": np.array(classes), "prefix": np.array(prefix)}
    for split in SPLITS:
        # Sorted by path, so the arrays do not depend on directory or archive order.
        chosen = sorted((i for i, p in enumerate(places) if p[1] == split), key=names.__getitem__)
        out[f"{split}_images"] = _stack([arrays[i] for i in chosen], shape)
        out[f"{split}_labels"] = np.array([index[places[i][2]] for i in chosen], np.int64)
    return out


def load_imagefolder(
    path: Path, *, cache_dir: Path | None, image_size: tuple[int, int] | None
) -> tuple[str, ImageSet, ImageSet, list[str]]:
    """(name, train, test, classes) from the cache, decoding and caching on a miss."""
    if not (path.is_dir() or (path.is_file() and tarfile.is_tarfile(path))):
        raise DataError(f"{path}: not a directory or a .tar/.tar.gz archive; expected {LAYOUT}")
    stem = next((path.name[: -len(s)] for s in _ARCHIVE_SUFFIXES if path.name.endswith(s)), path.name)
    rels = _dir_files(path) if path.is_dir() else None
    source = cache.archive_fingerprint(path) if rels is None else cache.files_fingerprint(path, rels)
    key = cache.cache_key(kind="imagefolder", source=source, image_size=image_size)
    entry = cache.cache_path(cache_dir or cache.default_cache_dir(), stem, key)
    arrays = cache.load_arrays(entry)
    if arrays is None:
        arrays = _decode_source(path, rels, image_size)
        cache.save_arrays(entry, arrays)
        log.info("cached %s at %s", path, entry)
    prefix = str(arrays["prefix"])
    name = prefix.rsplit("/", 1)[-1] if prefix else stem
    train, test = (
        ImageSet(torch.from_numpy(arrays[f"{s}_images"]), torch.from_numpy(arrays[f"{s}_labels"])) for s in SPLITS
    )
    return name, train, test, [str(c) for c in arrays["classes"]]
