"""Where a detection dataset's files come from: a directory or a .tar/.tar.gz archive, behind one
small interface (relative POSIX paths, bytes on demand), plus its cache fingerprint.

An archive is read in one sequential pass and its label and image files are kept in memory: a
detection set of a few thousand JPEGs is tens of MB, and random access into a .tar.gz would
decompress it again for every file."""

from __future__ import annotations

import os
import tarfile
import zlib
from pathlib import Path

from deepshrink.data import cache
from deepshrink.errors import DataError

IMAGE_EXTENSIONS = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"}
LABEL_EXTENSIONS = {".txt", ".xml", ".json", ".yaml", ".yml"}
ARCHIVE_SUFFIXES = (".tar.gz", ".tgz", ".tar.bz2", ".tar.xz", ".tar")


def is_image(rel: str) -> bool:
    return os.path.splitext(rel)[1].lower() in IMAGE_EXTENSIONS


def _wanted(rel: str) -> bool:
    name = rel.rsplit("/", 1)[-1]
    if name.startswith("."):  # hidden files, e.g. macOS "._x.jpg" resource forks
        return False
    return is_image(rel) or os.path.splitext(rel)[1].lower() in LABEL_EXTENSIONS


class Source:
    """The dataset's files as relative paths; `where(rel)` names a file in error messages."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.is_archive = not path.is_dir()
        if self.is_archive and not (path.is_file() and tarfile.is_tarfile(path)):
            raise DataError(f"{path}: not a directory or a .tar/.tar.gz archive")
        self._blobs: dict[str, bytes] = {}
        self._files: list[str] | None = None  # listed (and an archive read) on first use: a cache hit needs neither
        self._set: set[str] = set()

    @property
    def files(self) -> list[str]:
        if self._files is None:
            if self.is_archive:
                self._blobs = self._read_archive(self.path)
                self._files = sorted(self._blobs)
            else:
                self._files = sorted(self._walk(self.path))
            self._set = set(self._files)
        return self._files

    @staticmethod
    def _walk(root: Path) -> list[str]:
        rels = []
        for folder, dirs, files in os.walk(root):
            dirs.sort()
            base = Path(folder).relative_to(root).as_posix()
            rels += [f if base == "." else f"{base}/{f}" for f in files]
        return [r for r in rels if _wanted(r)]

    @staticmethod
    def _read_archive(path: Path) -> dict[str, bytes]:
        blobs = {}
        try:
            with tarfile.open(path, "r:*") as tar:
                for member in tar:
                    name = member.name.removeprefix("./")
                    if member.isfile() and _wanted(name):
                        blobs[name] = tar.extractfile(member).read()
        except (tarfile.TarError, OSError, EOFError, zlib.error) as exc:
            raise DataError(f"{path}: not a readable .tar/.tar.gz archive ({exc})") from None
        return blobs

    @property
    def stem(self) -> str:
        name = self.path.name
        return next((name[: -len(s)] for s in ARCHIVE_SUFFIXES if name.endswith(s)), name)

    def __contains__(self, rel: str) -> bool:
        self.files  # noqa: B018  (lists the source on first use)
        return rel in self._set

    def where(self, rel: str) -> str:
        return f"{self.path}:{rel}" if self.is_archive else f"{self.path}/{rel}"

    def read(self, rel: str) -> bytes:
        if rel not in self:
            raise DataError(f"{self.where(rel)}: file not found")
        if self.is_archive:
            return self._blobs[rel]
        try:
            return (self.path / rel).read_bytes()
        except OSError as exc:
            raise DataError(f"{self.where(rel)}: cannot read ({exc.strerror})") from None

    def text(self, rel: str) -> str:
        try:
            return self.read(rel).decode("utf-8-sig")
        except UnicodeDecodeError:
            raise DataError(f"{self.where(rel)}: not UTF-8 text") from None

    def fingerprint(self) -> dict:
        if self.is_archive:
            return cache.archive_fingerprint(self.path)
        return cache.files_fingerprint(self.path, self.files)

    def find_roots(self, marker: str) -> list[str]:
        """Folders (relative, '' for the top) that contain the path `marker`, shallowest first."""
        roots = set()
        for rel in self.files:
            if rel.startswith(marker):
                roots.add("")
            elif (index := rel.find("/" + marker)) >= 0:
                roots.add(rel[:index])
        return sorted(roots, key=lambda r: (r.count("/"), r))


def join(root: str, rel: str) -> str:
    return f"{root}/{rel}" if root else rel
