"""load_data('digits'), splits, stats, subset/describe and spec errors."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from deepshrink.data import DataSpec, ImageSet, channel_stats, describe, load_data, stratified_split, subset
from deepshrink.errors import ConfigError, DataError


@pytest.fixture(scope="module")
def digits():
    return load_data("digits")


def _rows(images: torch.Tensor) -> list[bytes]:
    return sorted(bytes(row) for row in images.reshape(images.shape[0], -1).numpy())


def test_digits_shapes_dtypes_and_split_sizes(digits):
    assert digits.input_size == (1, 8, 8) and digits.num_classes == 10
    assert digits.classes == tuple(str(i) for i in range(10))
    assert (len(digits.train), len(digits.val), len(digits.test)) == (1294, 144, 359)  # 1797 = 80/20, val 10 %
    for part in (digits.train, digits.val, digits.test):
        assert part.images.dtype == torch.uint8 and part.labels.dtype == torch.int64
        assert part.images.shape[1:] == (1, 8, 8) and part.images.is_contiguous()
    assert int(digits.train.images.max()) == 255 and int(digits.train.images.min()) == 0


def test_digits_splits_partition_the_dataset(digits):
    from sklearn.datasets import load_digits

    full = np.rint(load_digits().images * (255 / 16)).astype(np.uint8)[:, None]
    joined = torch.cat([digits.train.images, digits.val.images, digits.test.images])
    assert _rows(joined) == _rows(torch.from_numpy(full))  # same multiset: nothing lost, nothing twice


def test_val_is_stratified_and_seeded(digits):
    train_counts = np.array(digits.train.class_counts(10)) + np.array(digits.val.class_counts(10))
    val_counts = np.array(digits.val.class_counts(10))
    assert np.all(np.abs(val_counts - 0.1 * train_counts) <= 1)
    other = load_data("digits", seed=1)
    assert torch.equal(other.test.images, digits.test.images)  # test split does not move with seed
    assert not torch.equal(other.val.images, digits.val.images)
    assert torch.equal(load_data("digits").val.images, digits.val.images)


def test_stratified_split_exact_total_and_disjoint():
    labels = np.repeat(np.arange(3), [7, 5, 11])
    keep, held = stratified_split(labels, 0.3, seed=4)
    assert len(held) == round(0.3 * 23) and len(keep) + len(held) == 23
    assert not set(keep) & set(held)
    # exact shares 2.1 / 1.5 / 3.3: floors 2 / 1 / 3, the spare one goes to the largest remainder
    assert np.bincount(labels[held], minlength=3).tolist() == [2, 2, 3]
    keep0, held0 = stratified_split(labels, 0.0, seed=4)
    assert len(held0) == 0 and len(keep0) == 23


@settings(max_examples=60, deadline=None)
@given(
    counts=st.lists(st.integers(1, 40), min_size=1, max_size=6),
    fraction=st.floats(0.0, 0.95),
    seed=st.integers(0, 2**31),
)
def test_stratified_split_properties(counts, fraction, seed):
    labels = np.repeat(np.arange(len(counts)), counts)
    keep, held = stratified_split(labels, fraction, seed)
    assert np.array_equal(np.sort(np.concatenate([keep, held])), np.arange(len(labels)))  # partition
    assert len(held) == round(fraction * len(labels))
    per_class = np.bincount(labels[held], minlength=len(counts))
    assert np.all(np.abs(per_class - fraction * np.array(counts)) < 1)  # within one of the exact share


def test_val_fraction_zero_gives_empty_val():
    bundle = load_data("digits", val_fraction=0)
    assert len(bundle.val) == 0 and bundle.val.images.shape == (0, 1, 8, 8)
    assert len(bundle.train) == 1438


def test_mean_std_come_from_train_split(digits):
    x = digits.train.images.double() / 255
    assert digits.mean[0] == pytest.approx(x.mean().item(), abs=1e-6)
    assert digits.std[0] == pytest.approx(x.std(unbiased=False).item(), abs=1e-6)
    assert channel_stats(digits.train.images) == (digits.mean, digits.std)


def test_subset_and_describe(digits):
    part = subset(digits.train, 50, seed=3)
    assert len(part) == 50 and torch.equal(part.images, subset(digits.train, 50, seed=3).images)
    assert not torch.equal(part.labels, subset(digits.train, 50, seed=4).labels)
    assert subset(digits.train, 10_000) is digits.train
    info = describe(digits)
    assert info["sizes"] == {"train": 1294, "val": 144, "test": 359}
    assert sum(info["train_class_counts"]) == 1294 and info["input_size"] == [1, 8, 8]
    assert json.loads(json.dumps(info)) == info


def test_imageset_rejects_wrong_dtypes():
    with pytest.raises(DataError, match="uint8"):
        ImageSet(torch.zeros(2, 1, 4, 4), torch.zeros(2, dtype=torch.int64))
    with pytest.raises(DataError, match="int64"):
        ImageSet(torch.zeros(2, 1, 4, 4, dtype=torch.uint8), torch.zeros(3, dtype=torch.int64))


@pytest.mark.parametrize("spec", ["mnist", "cifar100:/x", "digts"])
def test_unknown_scheme_lists_accepted_forms(spec):
    with pytest.raises(DataError, match=r"unknown data spec .*accepted: digits.*cifar10:DIR.*imagefolder:PATH"):
        load_data(spec)


def test_close_match_and_missing_path(tmp_path):
    with pytest.raises(DataError, match="did you mean: digits"):
        DataSpec.parse("digts")
    missing = tmp_path / "nowhere"
    with pytest.raises(DataError, match=rf"{missing}: not found.*accepted"):
        load_data(f"imagefolder:{missing}")
    with pytest.raises(DataError, match="needs a path"):
        load_data("cifar10:")


def test_bad_options_name_the_field():
    with pytest.raises(ConfigError, match="val_fraction"):
        load_data("digits", val_fraction=1.0)
    with pytest.raises(ConfigError, match="image_size applies to imagefolder"):
        load_data("digits", image_size=16)
