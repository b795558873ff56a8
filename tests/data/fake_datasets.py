"""Writers for tiny datasets in tmp_path: class-per-folder images and CIFAR-10 pickles."""

from __future__ import annotations

import pickle
import tarfile
from pathlib import Path

import numpy as np
from PIL import Image


def pixel(split: str, cls: int, i: int) -> int:
    """A value unique to each image, so tests can tell which file ended up where."""
    return (0 if split == "train" else 100) + 10 * cls + i


def write_folder(root: Path, classes=("cat", "dog"), n_train=3, n_test=2, size=(6, 8), ext="png") -> Path:
    """root/train/<class>/NNNN.<ext> and root/test/... with constant images of value `pixel()`;
    size is (H, W). PNG keeps pixel values exact."""
    for split, n in (("train", n_train), ("test", n_test)):
        for c, name in enumerate(classes):
            folder = root / split / name
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(n):
                value = pixel(split, c, i)
                array = np.full((*size, 3), value, np.uint8)
                array[0, 0] = (value, 255 - value, 7)  # distinct channels: catches channel-order bugs
                Image.fromarray(array).save(folder / f"{i:04d}.{ext}")
    return root


def make_tar(source: Path, archive: Path, arcname: str) -> Path:
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(source, arcname=arcname)
    return archive


def write_cifar(folder: Path, n_train=4, n_test=3, protocol=2) -> tuple[np.ndarray, np.ndarray]:
    """The original format: data_batch_1..5 / test_batch pickled dicts with bytes keys (Python 2),
    `data` uint8 [N, 3072] (channel-major rows) and `labels` a list of ints."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    train = rng.integers(0, 256, (5 * n_train, 3072), dtype=np.uint8)
    test = rng.integers(0, 256, (n_test, 3072), dtype=np.uint8)
    for b in range(5):
        rows = train[b * n_train : (b + 1) * n_train]
        labels = [(b * n_train + i) % 10 for i in range(n_train)]
        record = {b"batch_label": b"training batch", b"data": rows, b"labels": labels}
        (folder / f"data_batch_{b + 1}").write_bytes(pickle.dumps(record, protocol=protocol))
    record = {b"data": test, b"labels": [i % 10 for i in range(n_test)]}
    (folder / "test_batch").write_bytes(pickle.dumps(record, protocol=protocol))
    classes = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
    names = [n.encode() for n in classes]
    (folder / "batches.meta").write_bytes(pickle.dumps({b"label_names": names, b"num_vis": 3072}, protocol=protocol))
    return train, test
