"""BatchLoader: determinism, sharding, augmentation maths, and throughput."""

from __future__ import annotations

import time

import pytest
import torch
import torch.nn.functional as F

from deepshrink.data import BatchLoader, DataBundle, ImageSet, sample_loader
from deepshrink.data.augment import crop_flip, hflip, normalize, normalizer
from deepshrink.errors import ConfigError

MEAN, STD = (0.4, 0.5, 0.6), (0.2, 0.25, 0.3)


def _set(n: int = 100, size: int = 8) -> ImageSet:
    """Labels are the sample indices, so a batch's labels show exactly which samples it holds."""
    g = torch.Generator().manual_seed(1)
    images = torch.randint(0, 256, (n, 3, size, size), dtype=torch.uint8, generator=g)
    return ImageSet(images, torch.arange(n))


def _epoch(loader: BatchLoader, epoch: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    loader.set_epoch(epoch)
    return list(loader)


def test_same_seed_and_epoch_give_identical_batches():
    data = _set()
    a = _epoch(BatchLoader(data, 16, train=True, mean=MEAN, std=STD, seed=3), 2)
    b = _epoch(BatchLoader(data, 16, train=True, mean=MEAN, std=STD, seed=3), 2)
    assert len(a) == len(b) == 6  # 100 // 16 with drop_last (the train default)
    for (xa, ya), (xb, yb) in zip(a, b):
        assert torch.equal(xa, xb) and torch.equal(ya, yb)


def test_epoch_and_seed_change_the_order():
    data = _set()
    loader = BatchLoader(data, 100, train=True, mean=MEAN, std=STD, seed=3)
    order0, order1 = _epoch(loader, 0)[0][1], _epoch(loader, 1)[0][1]
    other_seed = _epoch(BatchLoader(data, 100, train=True, mean=MEAN, std=STD, seed=4), 0)[0][1]
    assert sorted(order0.tolist()) == list(range(100))
    assert not torch.equal(order0, order1) and not torch.equal(order0, other_seed)


def test_eval_loader_is_sequential_unaugmented_and_keeps_the_tail():
    data = _set(10)
    batches = list(BatchLoader(data, 4, train=False, mean=MEAN, std=STD))
    assert [b[1].tolist() for b in batches] == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]]
    scale, shift = normalizer(MEAN, STD)
    assert torch.equal(torch.cat([b[0] for b in batches]), normalize(data.images, scale, shift))


@pytest.mark.parametrize("train, n, world", [(True, 103, 4), (False, 103, 4), (False, 8, 3)])
def test_shards_are_disjoint_cover_and_equal_length(train, n, world):
    data = _set(n)
    loaders = [
        BatchLoader(data, 8, train=train, mean=MEAN, std=STD, seed=5, rank=r, world_size=world) for r in range(world)
    ]
    seen = [torch.cat([y for _, y in _epoch(loader, 1)]) for loader in loaders]
    assert len({len(loader) for loader in loaders}) == 1
    assert len({len(s) for s in seen}) == 1
    flat = torch.cat(seen).tolist()
    if train:  # drop_last: 103 // 4 = 25 per rank, cut to 3 full batches of 8; no index twice
        assert len(flat) == len(set(flat)) == 4 * 24
    else:  # every sample seen; only the wrap-round padding repeats (fewer than world_size)
        assert set(flat) == set(range(n)) and len(flat) - n < world


def test_ranks_augment_differently():
    # 64 copies of one image: rank batches can then differ only through their crops and flips.
    same = _set(1).images.expand(64, -1, -1, -1)
    data = ImageSet(same, torch.arange(64))
    a, b = (BatchLoader(data, 32, train=True, mean=MEAN, std=STD, rank=r, world_size=2) for r in (0, 1))
    (xa, ya), (xb, yb) = next(iter(a)), next(iter(b))
    assert not set(ya.tolist()) & set(yb.tolist())
    assert not torch.equal(xa, xb)


def test_augment_with_no_pad_and_no_flip_is_the_normalised_source():
    data = _set(40)
    loader = BatchLoader(data, 10, train=True, mean=MEAN, std=STD, pad=0, flip=False, seed=2)
    scale, shift = normalizer(MEAN, STD)
    for x, y in loader:
        assert x.dtype == torch.float32 and x.shape == (10, 3, 8, 8)
        assert torch.equal(x, normalize(data.images[y], scale, shift))


def test_crops_are_windows_of_the_padded_source():
    data, pad = _set(32), 2
    loader = BatchLoader(data, 32, train=True, mean=MEAN, std=STD, pad=pad, seed=9)
    x, y = next(iter(loader))
    scale, shift = normalizer(MEAN, STD)
    padded = F.pad(data.images, (pad,) * 4)
    flips = 0
    for img, idx in zip(x, y.tolist()):
        matches = []
        for top in range(2 * pad + 1):
            for left in range(2 * pad + 1):
                window = padded[idx : idx + 1, :, top : top + 8, left : left + 8]
                for mirror in (False, True):
                    if torch.equal(img, normalize(hflip(window) if mirror else window, scale, shift)[0]):
                        matches.append(mirror)
        assert matches, f"sample {idx} is not a crop of its padded source"
        flips += matches[0]
    assert 4 <= flips <= 28  # about half flipped (binomial(32, 0.5) within +-4 sigma)


def test_crop_flip_primitive_and_flip_involution():
    images = _set(4).images
    zero, no, yes = torch.zeros(4, dtype=torch.long), torch.zeros(4, dtype=torch.bool), torch.ones(4, dtype=torch.bool)
    assert torch.equal(crop_flip(images, 0, zero, zero, no), images)
    mirrored = crop_flip(images, 3, zero + 3, zero + 3, yes)  # centred window of a pad-3 copy, mirrored
    assert torch.equal(mirrored, hflip(images)) and torch.equal(hflip(hflip(images)), images)
    shifted = crop_flip(images, 1, zero, zero + 2, no)  # one row down, one column left
    assert torch.equal(shifted[:, :, 1:, :7], images[:, :, :7, 1:]) and int(shifted[:, :, 0].abs().sum()) == 0


def test_len_limit_and_layout_options():
    data = _set(100)
    assert len(BatchLoader(data, 16, train=True, mean=MEAN, std=STD)) == 6
    assert len(BatchLoader(data, 16, train=False, mean=MEAN, std=STD)) == 7
    assert len(BatchLoader(data, 16, train=True, drop_last=False, mean=MEAN, std=STD)) == 7
    limited = BatchLoader(data, 16, train=True, mean=MEAN, std=STD, limit_batches=2, channels_last=True)
    batches = list(limited)
    assert len(limited) == len(batches) == 2
    assert batches[0][0].is_contiguous(memory_format=torch.channels_last)
    assert len(BatchLoader(ImageSet(data.images[:0], data.labels[:0]), 4, train=False, mean=MEAN, std=STD)) == 0


def test_bad_arguments_name_the_field():
    data = _set(8)
    with pytest.raises(ConfigError, match="batch_size"):
        BatchLoader(data, 0, train=True, mean=MEAN, std=STD)
    with pytest.raises(ConfigError, match="rank"):
        BatchLoader(data, 4, train=True, mean=MEAN, std=STD, rank=2, world_size=2)
    with pytest.raises(ConfigError, match="3 values"):
        BatchLoader(data, 4, train=True, mean=(0.5,), std=(0.2,))


@pytest.mark.slow
def test_throughput_far_above_training_speed():
    """CIFAR-sized batches of 128 with crop + flip: must leave ResNet-32's ~400 images/s far behind."""
    data = ImageSet(torch.randint(0, 256, (5_000, 3, 32, 32), dtype=torch.uint8), torch.zeros(5_000, dtype=torch.long))
    loader = BatchLoader(data, 128, train=True, mean=MEAN, std=STD, channels_last=True)
    list(loader)  # warm-up
    start = time.perf_counter()
    seen = sum(len(y) for _ in range(3) for _, y in loader)
    rate = seen / (time.perf_counter() - start)
    assert rate > 10 * 400, f"{rate:.0f} images/s"


def test_sample_loader_draws_every_class_from_a_class_sorted_split():
    # Stored datasets are often sorted by class: the first 64 of these are all class 0.
    images = torch.randint(0, 256, (400, 3, 8, 8), dtype=torch.uint8, generator=torch.Generator().manual_seed(2))
    train = ImageSet(images, torch.arange(4).repeat_interleave(100))
    bundle = DataBundle(train, train, train, ("a", "b", "c", "d"), 4, (3, 8, 8), MEAN, STD, "sorted")
    first = next(iter(sample_loader(bundle, 64)))
    assert first[1].unique().numel() == 4
    again = next(iter(sample_loader(bundle, 64)))
    assert torch.equal(first[0], again[0])  # seeded: the same sample every call
    batches = list(sample_loader(bundle, 64, limit_batches=3))
    assert [len(b[1]) for b in batches] == [64, 64, 64]
    every = torch.cat([labels for _, labels in sample_loader(bundle, 64)])
    assert every.numel() == 400 and every.bincount().tolist() == [100] * 4  # un-augmented, nothing dropped


def test_quantisation_calibration_from_a_bundle_is_a_shuffled_sample():
    from deepshrink.quantization.calibrate import calibration_batches

    images = torch.randint(0, 256, (400, 3, 8, 8), dtype=torch.uint8, generator=torch.Generator().manual_seed(3))
    train = ImageSet(images, torch.arange(4).repeat_interleave(100))
    bundle = DataBundle(train, train, train, ("a", "b", "c", "d"), 4, (3, 8, 8), MEAN, STD, "sorted")
    batches = calibration_batches(bundle, 128, 64)
    assert sum(len(b) for b in batches) == 128
    first_class = normalize(images[:100], *normalizer(MEAN, STD))
    outside = [not any(torch.allclose(row, ref) for ref in first_class) for row in torch.cat(batches)]
    assert sum(outside) > 64  # most come from the other three classes
