"""Decode a stream of image files with Pillow, in up to two worker processes, with a progress bar.

The stream is consumed lazily, so reading a .tar.gz (one core) overlaps with decoding (the
others). Small inputs are decoded in-process: starting a pool costs more than it saves."""

from __future__ import annotations

import io
import itertools
import logging
import multiprocessing
import os
import time
from collections.abc import Iterable, Iterator

import numpy as np
from PIL import Image
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from deepshrink.errors import DataError

log = logging.getLogger(__name__)

CHUNK = 1000
MAX_WORKERS = 2  # the project's machines have 2 cores, shared; more would only contend
_GRAY_MODES = {"1", "L", "LA", "I", "I;16", "F"}

# One item: (display path for errors, file bytes or a filesystem path).
Item = tuple[str, "bytes | str"]


def decode_one(source: bytes | str, size: tuple[int, int] | None) -> np.ndarray:
    """HxW (grayscale) or HxWx3 uint8; `size` is (H, W) to resize to, or None to keep."""
    with Image.open(io.BytesIO(source) if isinstance(source, bytes) else source) as im:
        im = im.convert("L" if im.mode in _GRAY_MODES else "RGB")
        if size is not None and im.size != (size[1], size[0]):
            im = im.resize((size[1], size[0]), Image.Resampling.BILINEAR)
        return np.asarray(im)


def _decode_chunk(args: tuple[list[Item], tuple[int, int] | None]) -> list[np.ndarray | str]:
    """Worker body: arrays, or an error string in place of each unreadable file (exceptions
    crossing the process boundary would lose the path)."""
    items, size = args
    out: list[np.ndarray | str] = []
    for _, source in items:
        try:
            out.append(decode_one(source, size))
        except Exception as exc:  # Pillow raises UnidentifiedImageError, OSError, SyntaxError, ...
            out.append(f"{type(exc).__name__}: {exc}")
    return out


def _chunks(items: Iterable[Item]) -> Iterator[list[Item]]:
    it = iter(items)
    while chunk := list(itertools.islice(it, CHUNK)):
        yield chunk


def _pool():
    # fork: workers need no re-import of the caller's __main__ (spawn would re-run user scripts
    # that lack a __main__ guard) and they only touch Pillow and numpy, never torch.
    methods = multiprocessing.get_all_start_methods()
    ctx = multiprocessing.get_context("fork" if "fork" in methods else None)
    return ctx.Pool(min(MAX_WORKERS, os.cpu_count() or 1))


def decode_all(
    items: Iterable[Item], *, size: tuple[int, int] | None, label: str, where: str = "", total: int | None = None
) -> tuple[list[str], list[np.ndarray]]:
    """Decode every item; returns (names, arrays) in input order. An unreadable file raises
    DataError naming it as `where + name` (a path, or "archive:member")."""
    chunks = _chunks(items)
    first = next(chunks, [])
    second = next(chunks, None)
    names: list[str] = []
    arrays: list[np.ndarray] = []
    start = time.perf_counter()
    console = Console(stderr=True)
    columns = (TextColumn("decoding {task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=console, transient=True, disable=not console.is_terminal) as progress:
        task = progress.add_task(label, total=total)
        pool = _pool() if second is not None and MAX_WORKERS > 1 else None
        try:
            all_chunks = itertools.chain([first], [] if second is None else [second], chunks)
            # Record each chunk's names as the pool's feeder thread pulls it, so results (which
            # imap returns in order) line up with them.
            fed: list[list[Item]] = []
            tagged = ((fed.append(c) or (c, size)) for c in all_chunks)
            results = pool.imap(_decode_chunk, tagged) if pool else map(_decode_chunk, tagged)
            for i, decoded in enumerate(results):
                for (name, _), value in zip(fed[i], decoded):
                    if isinstance(value, str):
                        raise DataError(f"{where}{name}: cannot read image ({value})")
                    names.append(name)
                    arrays.append(value)
                fed[i] = []  # drop the raw bytes early
                progress.update(task, advance=len(decoded))
        finally:
            if pool is not None:
                pool.terminate()
    log.info("decoded %d images from %s in %.1f s", len(arrays), label, time.perf_counter() - start)
    return names, arrays
