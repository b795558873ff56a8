"""cifar10:DIR on tiny fake batches in the original pickle format, and the restricted unpickler."""

from __future__ import annotations

import os
import pickle
import tarfile

import numpy as np
import pytest
import torch
from fake_datasets import write_cifar

from deepshrink.data import load_data
from deepshrink.errors import DataError
from deepshrink.models import CIFAR_MEAN, CIFAR_STD


@pytest.mark.parametrize("protocol", [2, 5])
def test_batch_folder_and_its_parent(tmp_path, protocol):
    folder = tmp_path / "cifar-10-batches-py"
    train, test = write_cifar(folder, protocol=protocol)
    for spec in (f"cifar10:{folder}", f"cifar10:{tmp_path}"):
        bundle = load_data(spec, val_fraction=0)
        assert bundle.input_size == (3, 32, 32) and bundle.num_classes == 10 and bundle.classes[0] == "airplane"
        assert (bundle.mean, bundle.std) == (CIFAR_MEAN, CIFAR_STD)
        assert torch.equal(bundle.train.images, torch.from_numpy(train.reshape(-1, 3, 32, 32)))
        assert torch.equal(bundle.test.images, torch.from_numpy(test.reshape(-1, 3, 32, 32)))
        assert bundle.train.labels.tolist() == [i % 10 for i in range(20)]


def test_downloaded_archive_and_val_split(tmp_path):
    folder = tmp_path / "cifar-10-batches-py"
    train, _ = write_cifar(folder, n_train=10)
    archive = tmp_path / "cifar-10-python.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(folder, arcname="cifar-10-batches-py")
    bundle = load_data(f"cifar10:{archive}", val_fraction=0.2)
    assert (len(bundle.train), len(bundle.val), len(bundle.test)) == (40, 10, 3)
    assert bundle.val.class_counts(10) == [1] * 10  # stratified: 5 per class, one held out each
    joined = torch.cat([bundle.train.images, bundle.val.images]).reshape(50, -1)
    assert sorted(map(bytes, joined.numpy())) == sorted(map(bytes, train))


def test_missing_batch_is_named(tmp_path):
    folder = tmp_path / "cifar-10-batches-py"
    write_cifar(folder)
    (folder / "data_batch_3").unlink()
    expected = rf"{folder}/data_batch_3: not found; expected .*data_batch_1..5 and test_batch"
    with pytest.raises(DataError, match=expected):
        load_data(f"cifar10:{tmp_path}")


class _Exploit:
    def __init__(self, target: str) -> None:
        self.target = target

    def __reduce__(self):
        return os.mkdir, (self.target,)


def test_pickle_with_other_callables_is_refused_and_not_run(tmp_path):
    folder = tmp_path / "cifar-10-batches-py"
    write_cifar(folder)
    marker = tmp_path / "pwned"
    record = {b"data": np.zeros((1, 3072), np.uint8), b"labels": [0], b"x": _Exploit(str(marker))}
    (folder / "test_batch").write_bytes(pickle.dumps(record, protocol=2))
    expected = rf"{folder}/test_batch: not a readable CIFAR-10 batch \(refusing to load \w+\.mkdir\)"
    with pytest.raises(DataError, match=expected):
        load_data(f"cifar10:{folder}")
    assert not marker.exists()


def test_wrong_shapes_and_keys_are_named(tmp_path):
    folder = tmp_path / "cifar-10-batches-py"
    write_cifar(folder)
    (folder / "data_batch_2").write_bytes(pickle.dumps({b"data": np.zeros((2, 100), np.uint8), b"labels": [0, 1]}))
    with pytest.raises(DataError, match=r"data_batch_2: 'data' must be uint8 \[N, 3072\]"):
        load_data(f"cifar10:{folder}")
    (folder / "data_batch_2").write_bytes(pickle.dumps({b"images": np.zeros((2, 3072), np.uint8)}))
    with pytest.raises(DataError, match=r"data_batch_2: missing key 'data'"):
        load_data(f"cifar10:{folder}")
