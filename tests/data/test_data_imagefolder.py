"""imagefolder:PATH from a directory and a .tar.gz: layout, decoding, caching, and errors."""

from __future__ import annotations

import io
import os
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from fake_datasets import make_tar, pixel, write_folder
from PIL import Image

from deepshrink.data import decode, describe, imagefolder, load_data
from deepshrink.errors import DataError
from deepshrink.models import CIFAR_MEAN, CIFAR_STD


def _load(path: Path, cache: Path, **kw):
    return load_data(f"imagefolder:{path}", cache_dir=cache, val_fraction=0, **kw)


def _check_tiny(bundle) -> None:
    assert bundle.classes == ("cat", "dog") and bundle.input_size == (3, 6, 8)
    for split, part, n in (("train", bundle.train, 3), ("test", bundle.test, 2)):
        assert part.images.shape == (2 * n, 3, 6, 8) and part.images.dtype == torch.uint8
        assert part.labels.tolist() == [0] * n + [1] * n
        expected = [pixel(split, c, i) for c in range(2) for i in range(n)]
        assert part.images[:, 0, 1, 1].tolist() == expected  # each file landed in its place
        assert part.images[:, 1, 0, 0].tolist() == [255 - v for v in expected]  # RGB order kept


def test_directory_loads_with_sorted_classes_and_exact_pixels(tiny_folder, tmp_path):
    bundle = _load(tiny_folder, tmp_path / "cache")
    _check_tiny(bundle)
    assert bundle.name == "tiny"
    assert describe(bundle)["sizes"] == {"train": 6, "val": 0, "test": 4}
    x = bundle.train.images.double() / 255  # not 3x32x32, so mean/std come from train
    assert bundle.mean == pytest.approx(x.mean(dim=(0, 2, 3)).tolist(), abs=1e-6)


@pytest.mark.parametrize("arcname", ["", "tiny-jpeg"])
def test_targz_with_and_without_top_folder(tiny_folder, tmp_path, arcname):
    archive = make_tar(tiny_folder, tmp_path / "set.tar.gz", arcname)
    bundle = _load(archive, tmp_path / "cache")
    _check_tiny(bundle)
    assert bundle.name == (arcname or "set")


def test_second_load_hits_the_cache_without_decoding(tiny_folder, tmp_path, monkeypatch):
    archive = make_tar(tiny_folder, tmp_path / "set.tar.gz", "tiny")
    first = _load(archive, tmp_path / "cache")
    assert len(list((tmp_path / "cache").glob("set-*.npz"))) == 1

    def refuse(*args, **kwargs):
        raise AssertionError("decoded again despite a cache entry")

    monkeypatch.setattr(imagefolder, "decode_all", refuse)
    second = _load(archive, tmp_path / "cache")
    assert torch.equal(first.train.images, second.train.images) and first.classes == second.classes
    os.utime(archive, ns=(time.time_ns(), time.time_ns() + 10**9))  # a changed source misses
    with pytest.raises(AssertionError, match="decoded again"):
        _load(archive, tmp_path / "cache")


def test_directory_cache_sees_an_edited_file(tiny_folder, tmp_path):
    before = _load(tiny_folder, tmp_path / "cache")
    target = tiny_folder / "train" / "cat" / "0000.png"
    Image.fromarray(np.full((6, 8, 3), 42, np.uint8)).save(target)
    os.utime(target, ns=(time.time_ns(), time.time_ns() + 10**9))
    after = _load(tiny_folder, tmp_path / "cache")
    assert int(before.train.images[0, 0, 1, 1]) == 0 and int(after.train.images[0, 0, 1, 1]) == 42
    assert len(list((tmp_path / "cache").glob("*.npz"))) == 2


def test_pool_decode_matches_in_process(tiny_folder, tmp_path, monkeypatch):
    expected = _load(tiny_folder, tmp_path / "a")
    monkeypatch.setattr(decode, "CHUNK", 3)  # 10 images -> 4 chunks -> the decode threads
    pooled = _load(make_tar(tiny_folder, tmp_path / "set.tar", "x"), tmp_path / "b")
    assert torch.equal(pooled.train.images, expected.train.images)
    assert torch.equal(pooled.test.labels, expected.test.labels)


@pytest.mark.parametrize("pooled", [False, True])
def test_corrupt_image_names_its_path(tiny_folder, tmp_path, monkeypatch, pooled):
    if pooled:
        monkeypatch.setattr(decode, "CHUNK", 2)
    bad = tiny_folder / "test" / "dog" / "0001.png"
    bad.write_bytes(b"not a png at all")
    with pytest.raises(DataError, match=rf"{bad}: cannot read image"):
        _load(tiny_folder, tmp_path / "cache")
    archive = make_tar(tiny_folder, tmp_path / "set.tar.gz", "tiny")
    with pytest.raises(DataError, match=rf"{archive}:tiny/test/dog/0001.png: cannot read image"):
        _load(archive, tmp_path / "cache")


def test_decode_error_stops_queued_chunks_and_leaves_no_threads(monkeypatch):
    monkeypatch.setattr(decode, "CHUNK", 1)
    good = Image.new("RGB", (4, 4))
    buffer = io.BytesIO()
    good.save(buffer, format="PNG")
    decoded: list[str] = []
    real = decode.decode_one

    def counting(source, size):
        decoded.append("x")
        return real(source, size)

    monkeypatch.setattr(decode, "decode_one", counting)
    items = [("a.png", buffer.getvalue()), ("bad.png", b"junk")] + [(f"{i}.png", buffer.getvalue()) for i in range(50)]
    before = threading.active_count()
    with pytest.raises(DataError, match=r"^set:bad.png: cannot read image"):
        decode.decode_all(items, size=None, label="set", where="set:")
    assert threading.active_count() == before
    assert len(decoded) < len(items)  # the stream was not decoded to its end after the error


def test_missing_split_names_what_was_expected(tmp_path):
    root = write_folder(tmp_path / "only-train")
    for f in (root / "test").rglob("*.png"):
        f.unlink()
    with pytest.raises(DataError, match=r"only-train: missing test/ \(found only train/\); expected train/<class>"):
        _load(root, tmp_path / "cache")
    archive = make_tar(root, tmp_path / "only-train.tar.gz", "top")
    with pytest.raises(DataError, match=r"only-train.tar.gz: missing top/test/"):
        _load(archive, tmp_path / "cache")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(DataError, match=r"empty: no images found; expected train/<class>"):
        _load(empty, tmp_path / "cache")


def test_odd_size_is_named_and_resize_fixes_it(tiny_folder, tmp_path):
    odd = tiny_folder / "train" / "dog" / "0002.png"
    Image.fromarray(np.zeros((10, 12, 3), np.uint8)).save(odd)
    with pytest.raises(DataError, match=rf"{odd}: image is 12x10, expected 8x6"):
        _load(tiny_folder, tmp_path / "cache")
    bundle = _load(tiny_folder, tmp_path / "cache", image_size=(5, 7))
    assert bundle.input_size == (3, 5, 7) and len(bundle.train) == 6


def test_gray_images_give_one_channel_and_cifar_like_sets_get_zoo_stats(tmp_path):
    gray = tmp_path / "gray"
    for split in ("train", "test"):
        for cls in ("b", "a"):
            (gray / split / cls).mkdir(parents=True)
            Image.fromarray(np.full((4, 4), 9 if cls == "a" else 200, np.uint8)).save(gray / split / cls / "x.png")
    bundle = _load(gray, tmp_path / "cache")
    assert bundle.input_size == (1, 4, 4) and bundle.classes == ("a", "b")
    assert bundle.train.images[:, 0, 0, 0].tolist() == [9, 200]
    cifar_like = write_folder(tmp_path / "c32", size=(32, 32), ext="jpg")
    bundle = _load(cifar_like, tmp_path / "cache")
    assert (bundle.mean, bundle.std) == (CIFAR_MEAN, CIFAR_STD)


def test_truncated_archive_is_named(tiny_folder, tmp_path):
    archive = make_tar(tiny_folder, tmp_path / "set.tar", "tiny")  # uncompressed: cut mid-member
    data = archive.read_bytes()
    archive.write_bytes(data[: len(data) // 2])
    with pytest.raises(DataError, match=rf"{archive}: not a readable .tar/.tar.gz archive"):
        _load(archive, tmp_path / "cache")


def test_not_a_folder_or_archive(tmp_path):
    stray = tmp_path / "notes.txt"
    stray.write_text("hello")
    with pytest.raises(DataError, match=rf"{stray}: not a directory or a .tar/.tar.gz archive"):
        _load(stray, tmp_path / "cache")


@pytest.mark.slow
def test_real_cifar10_jpeg_archive(shared_dir, tmp_path_factory):
    archive = shared_dir / "datasets" / "cifar10-jpeg.tar.gz"
    if not archive.is_file():
        pytest.skip(f"{archive} not found")
    cache = tmp_path_factory.mktemp("cache")
    bundle = load_data(f"imagefolder:{archive}", cache_dir=cache, val_fraction=0)
    assert (len(bundle.train), len(bundle.test)) == (50_000, 10_000)
    assert bundle.classes == ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
    assert bundle.train.class_counts(10) == [5_000] * 10 and bundle.test.class_counts(10) == [1_000] * 10
    assert bundle.input_size == (3, 32, 32) and (bundle.mean, bundle.std) == (CIFAR_MEAN, CIFAR_STD)
    start = time.perf_counter()
    cached = load_data(f"imagefolder:{archive}", cache_dir=cache)
    assert time.perf_counter() - start < 5.0  # target 1-2 s; slack for a busy shared machine
    assert (len(cached.train), len(cached.val)) == (45_000, 5_000)
    assert cached.val.class_counts(10) == [500] * 10
