"""`cifar10:DIR`: the original CIFAR-10 python version (`cifar-10-batches-py`).

DIR is that folder, its parent, or the `cifar-10-python.tar.gz` download itself. Each batch is
a Python pickle of a dict of numpy arrays, lists and bytes. Pickles can run arbitrary code, so
they are read with a restricted unpickler that resolves only numpy's array-reconstruction
functions and types (and `_codecs.encode`, which protocol-2 pickles use for bytes); any other
class or function in the file is refused."""

from __future__ import annotations

import codecs
import io
import pickle
import tarfile
from pathlib import Path

import numpy as np
import torch

from deepshrink.data.bundle import ImageSet
from deepshrink.errors import DataError

FOLDER = "cifar-10-batches-py"
TRAIN_BATCHES = tuple(f"data_batch_{i}" for i in range(1, 6))
TEST_BATCH = "test_batch"
META = "batches.meta"
CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
EXPECTED = f"a {FOLDER} folder (or its parent, or cifar-10-python.tar.gz) with data_batch_1..5 and test_batch"

_reconstruct = np.zeros(1).__reduce__()[0]  # numpy's own array-rebuilding functions
_frombuffer = np.zeros(1).__reduce_ex__(5)[0]  # (protocol 5 variant)
_ALLOWED = {
    ("numpy.core.multiarray", "_reconstruct"): _reconstruct,  # numpy 1.x module names
    ("numpy._core.multiarray", "_reconstruct"): _reconstruct,  # numpy 2.x
    ("numpy.core.numeric", "_frombuffer"): _frombuffer,
    ("numpy._core.numeric", "_frombuffer"): _frombuffer,
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
    ("_codecs", "encode"): codecs.encode,
}


class _NumpyOnlyUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str):
        try:
            return _ALLOWED[(module, name)]
        except KeyError:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name}") from None


def _read_pickle(blob: bytes, where: str) -> dict:
    try:
        # encoding="bytes": the original batches were pickled by Python 2 (str keys become bytes).
        obj = _NumpyOnlyUnpickler(io.BytesIO(blob), encoding="bytes").load()
    except Exception as exc:  # UnpicklingError, EOFError, ValueError, ... all mean "bad file"
        raise DataError(f"{where}: not a readable CIFAR-10 batch ({exc})") from None
    if not isinstance(obj, dict):
        raise DataError(f"{where}: expected a dict in the CIFAR-10 batch, found {type(obj).__name__}")
    return {k.decode("latin1") if isinstance(k, bytes) else k: v for k, v in obj.items()}


def _batch(blob: bytes, where: str) -> tuple[np.ndarray, np.ndarray]:
    record = _read_pickle(blob, where)
    for key in ("data", "labels"):
        if key not in record:
            raise DataError(f"{where}: missing key '{key}' (found {', '.join(map(str, record))})")
    try:
        data, labels = np.asarray(record["data"]), np.asarray(record["labels"], dtype=np.int64)
    except (TypeError, ValueError) as exc:
        raise DataError(f"{where}: 'labels' must be integers ({exc})") from None
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3 * 32 * 32 or len(data) != len(labels):
        raise DataError(
            f"{where}: 'data' must be uint8 [N, 3072] with one label each, got {data.dtype} {data.shape} "
            f"and {len(labels)} labels"
        )
    if len(labels) and (labels.min() < 0 or labels.max() >= len(CLASSES)):
        raise DataError(f"{where}: labels must be in 0..9, found {labels.min()}..{labels.max()}")
    return data.reshape(-1, 3, 32, 32), labels


def _read_blobs(path: Path) -> tuple[dict[str, bytes], str]:
    """{file name: bytes} for the batch files, and a prefix for error messages."""
    wanted = (*TRAIN_BATCHES, TEST_BATCH, META)
    if path.is_file():
        try:
            with tarfile.open(path, "r:*") as tar:
                members = {Path(m.name).name: m for m in tar if m.isfile() and Path(m.name).parent.name == FOLDER}
                blobs = {n: tar.extractfile(members[n]).read() for n in wanted if n in members}
        except (tarfile.TarError, OSError, EOFError) as exc:
            raise DataError(f"{path}: not a readable CIFAR-10 archive ({exc}); expected {EXPECTED}") from None
        return blobs, f"{path}:{FOLDER}/"
    folder = path / FOLDER if (path / FOLDER).is_dir() else path
    return {n: (folder / n).read_bytes() for n in wanted if (folder / n).is_file()}, f"{folder}/"


def load_cifar10(path: Path) -> tuple[ImageSet, ImageSet, list[str]]:
    """(train, test, classes): 50,000 + 10,000 images for the real dataset."""
    blobs, where = _read_blobs(path)
    missing = [n for n in (*TRAIN_BATCHES, TEST_BATCH) if n not in blobs]
    if missing:
        raise DataError(f"{where}{missing[0]}: not found; expected {EXPECTED}")
    train = [_batch(blobs[n], f"{where}{n}") for n in TRAIN_BATCHES]
    test_images, test_labels = _batch(blobs[TEST_BATCH], f"{where}{TEST_BATCH}")
    classes = list(CLASSES)
    if META in blobs:
        names = _read_pickle(blobs[META], f"{where}{META}").get("label_names")
        if names is not None and len(names) == len(CLASSES):
            classes = [n.decode() if isinstance(n, bytes) else str(n) for n in names]

    def imageset(images: np.ndarray, labels: np.ndarray) -> ImageSet:
        return ImageSet(torch.from_numpy(np.ascontiguousarray(images)), torch.from_numpy(labels))

    return (
        imageset(np.concatenate([b[0] for b in train]), np.concatenate([b[1] for b in train])),
        imageset(test_images, test_labels),
        classes,
    )
