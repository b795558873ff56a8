"""The decoded-array cache: where it lives, how a source is fingerprinted, atomic .npz files.

A cache entry is keyed by a hash of the source (cheap to compute: no full read of a 20 MB
archive or 60,000 files), the decode options, and a format version, so editing the source or the
options simply misses the cache and decodes again."""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import zipfile
from pathlib import Path

import numpy as np

from deepshrink.errors import DataError

CACHE_VERSION = 1
_MB = 1 << 20


def default_cache_dir() -> Path:
    """$DEEPSHRINK_CACHE/data, else ~/.cache/deepshrink/data."""
    root = os.environ.get("DEEPSHRINK_CACHE") or Path.home() / ".cache" / "deepshrink"
    return Path(root).expanduser() / "data"


def archive_fingerprint(path: Path) -> dict:
    """Size, mtime and a hash of the first and last MB: changes when the archive does, in ~1 ms."""
    stat = path.stat()
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        digest.update(handle.read(_MB))
        handle.seek(max(0, stat.st_size - _MB))
        digest.update(handle.read(_MB))
    return {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns, "ends": digest.hexdigest()}


def files_fingerprint(root: Path, relpaths: list[str]) -> dict:
    """Sorted relative paths with sizes and mtimes: any added, removed or edited file shows."""
    digest = hashlib.sha256()
    for rel in sorted(relpaths):
        stat = (root / rel).stat()
        digest.update(f"{rel}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
    return {"files": len(relpaths), "listing": digest.hexdigest()}


def cache_key(**parts) -> str:
    blob = json.dumps({"version": CACHE_VERSION, **parts}, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:20]


def cache_path(cache_dir: Path, name: str, key: str) -> Path:
    safe = "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in name) or "data"
    return cache_dir / f"{safe}-{key}.npz"


def save_arrays(path: Path, arrays: dict[str, np.ndarray]) -> Path:
    """Uncompressed .npz (loads at disk speed) written to a temp file and renamed into place, so a
    crash or a concurrent DDP rank never leaves a half-written entry."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as exc:
        raise DataError(f"{path.parent}: cannot write the data cache ({exc.strerror})") from None
    try:
        with os.fdopen(fd, "wb") as handle:
            np.savez(handle, **arrays)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, 0o644)  # mkstemp makes it owner-only; a team may share one cache folder
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def load_arrays(path: Path) -> dict[str, np.ndarray] | None:
    """The cached arrays, or None when the entry is missing or unreadable (then we re-decode)."""
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as data:
            return {k: data[k] for k in data.files}
    except (OSError, ValueError, zipfile.BadZipFile, EOFError):
        return None
