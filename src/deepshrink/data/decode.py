"""Decode a stream of image files with Pillow, in up to two worker threads, with a progress bar.

Pillow releases the GIL while it decodes, converts and resizes, so threads decode in parallel
without forking: a forked pool inherits whatever locks the parent's other threads hold, and
deadlocked CI once on terminate. The stream is consumed lazily in the calling thread, so reading a
.tar.gz overlaps with decoding, and only a few chunks are in flight at once."""

from __future__ import annotations

import io
import itertools
import logging
import os
import time
from collections import deque
from collections.abc import Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor

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


def _decode_chunk(items: list[Item], size: tuple[int, int] | None, where: str) -> list[np.ndarray]:
    out: list[np.ndarray] = []
    for name, source in items:
        try:
            out.append(decode_one(source, size))
        except Exception as exc:  # Pillow raises UnidentifiedImageError, OSError, SyntaxError, ...
            raise DataError(f"{where}{name}: cannot read image ({type(exc).__name__}: {exc})") from exc
    return out


def _chunks(items: Iterable[Item]) -> Iterator[list[Item]]:
    it = iter(items)
    while chunk := list(itertools.islice(it, CHUNK)):
        yield chunk


def _decoded_in_order(
    chunks: Iterator[list[Item]], size: tuple[int, int] | None, where: str, workers: int
) -> Iterator[tuple[list[Item], list[np.ndarray]]]:
    """(chunk, arrays) in input order, with at most 2 * workers chunks submitted ahead."""
    with ThreadPoolExecutor(workers, thread_name_prefix="deepshrink-decode") as pool:
        pending: deque[tuple[list[Item], Future]] = deque()
        try:
            for chunk in chunks:
                pending.append((chunk, pool.submit(_decode_chunk, chunk, size, where)))
                if len(pending) > 2 * workers:
                    done, future = pending.popleft()
                    yield done, future.result()
            while pending:
                done, future = pending.popleft()
                yield done, future.result()
        finally:
            for _, future in pending:  # an error, or a consumer that stopped early: drop queued work
                future.cancel()


def decode_all(
    items: Iterable[Item], *, size: tuple[int, int] | None, label: str, where: str = "", total: int | None = None
) -> tuple[list[str], list[np.ndarray]]:
    """Decode every item; returns (names, arrays) in input order. An unreadable file raises
    DataError naming it as `where + name` (a path, or "archive:member")."""
    decoded = _decoded_in_order(_chunks(items), size, where, min(MAX_WORKERS, os.cpu_count() or 1))
    names: list[str] = []
    arrays: list[np.ndarray] = []
    start = time.perf_counter()
    console = Console(stderr=True)
    columns = (TextColumn("decoding {task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=console, transient=True, disable=not console.is_terminal) as progress:
        task = progress.add_task(label, total=total)
        for chunk, chunk_arrays in decoded:
            names.extend(name for name, _ in chunk)
            arrays.extend(chunk_arrays)
            progress.update(task, advance=len(chunk_arrays))
    log.info("decoded %d images from %s in %.1f s", len(arrays), label, time.perf_counter() - start)
    return names, arrays
