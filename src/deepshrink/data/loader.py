"""`BatchLoader`: shuffled, sharded, augmented batches straight from an in-memory `ImageSet`.

Randomness is a pure function of (seed, epoch[, rank, batch]): the shuffle comes from a generator
seeded by (seed, epoch), identical on every DDP rank, and each batch's crop/flip draws from its own
generator seeded by (seed, epoch, rank, batch). So a run is reproducible and resumable from any
epoch (or batch) without saving RNG state, and ranks never augment alike."""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence

import numpy as np
import torch

from deepshrink.data.augment import normalize, normalizer, random_crop_flip
from deepshrink.data.bundle import ImageSet
from deepshrink.errors import ConfigError
from deepshrink.threads import one_thread


def derive_seed(*parts: int) -> int:
    """A well-mixed 63-bit seed from integers, so (seed, epoch) and (seed + 1, epoch - 1) differ."""
    state = np.random.SeedSequence([int(p) & 0xFFFFFFFFFFFFFFFF for p in parts]).generate_state(2, np.uint32)
    return (int(state[0]) << 31) ^ int(state[1])


def _generator(*parts: int) -> torch.Generator:
    return torch.Generator().manual_seed(derive_seed(*parts))


class BatchLoader:
    """Iterates `(images float32 [B, C, H, W] normalised, labels int64 [B])` over one epoch.

    Under DDP every rank gets the same number of batches: the shuffled order is cut to
    (drop_last) or wrapped round to (otherwise) a multiple of world_size, then dealt round-robin,
    as torch's DistributedSampler does."""

    def __init__(
        self,
        imageset: ImageSet,
        batch_size: int,
        *,
        train: bool,
        augment: bool | None = None,
        mean: Sequence[float],
        std: Sequence[float],
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
        limit_batches: int | None = None,
        drop_last: bool | None = None,
        pad: int = 4,
        flip: bool = True,
        channels_last: bool = False,
        device: torch.device | str = "cpu",
    ) -> None:
        channels = imageset.images.shape[1]
        if batch_size < 1:
            raise ConfigError(f"batch_size must be >= 1, got {batch_size}")
        if world_size < 1 or not 0 <= rank < world_size:
            raise ConfigError(f"rank must be in [0, world_size), got rank={rank}, world_size={world_size}")
        if limit_batches is not None and limit_batches < 0:
            raise ConfigError(f"limit_batches must be >= 0 or None, got {limit_batches}")
        if pad < 0:
            raise ConfigError(f"pad must be >= 0, got {pad}")
        if len(mean) != channels or len(std) != channels:
            raise ConfigError(f"mean and std need {channels} values (one per channel), got {len(mean)} and {len(std)}")
        if min(std) <= 0:
            raise ConfigError(f"std values must be > 0, got {tuple(std)}")
        self.imageset = imageset
        self.batch_size = batch_size
        self.train = train
        self.augment = train if augment is None else augment
        self.drop_last = train if drop_last is None else drop_last
        self.seed, self.rank, self.world_size = seed, rank, world_size
        self.limit_batches, self.pad, self.flip = limit_batches, pad, flip
        self.channels_last = channels_last
        self.device = torch.device(device)
        self.mean, self.std = tuple(mean), tuple(std)
        self._scale, self._shift = normalizer(mean, std, self.device)
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    @property
    def samples_per_rank(self) -> int:
        n = len(self.imageset)
        return n // self.world_size if self.drop_last else math.ceil(n / self.world_size)

    def __len__(self) -> int:
        per_rank = self.samples_per_rank
        batches = per_rank // self.batch_size if self.drop_last else math.ceil(per_rank / self.batch_size)
        return batches if self.limit_batches is None else min(batches, self.limit_batches)

    def indices(self) -> torch.Tensor:
        """This rank's sample indices for the current epoch, in batch order."""
        n = len(self.imageset)
        if self.train:
            order = torch.randperm(n, generator=_generator(self.seed, self.epoch))
        else:
            order = torch.arange(n)
        total = self.samples_per_rank * self.world_size
        if total > n:  # wrap round so every rank gets the same count
            order = torch.cat([order, order.repeat(math.ceil(total / n))[: total - n]])
        return order[:total][self.rank :: self.world_size]

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        order = self.indices()
        for b in range(len(self)):
            with one_thread():  # small memory-bound ops: see deepshrink.threads
                batch = self._batch(order[b * self.batch_size : (b + 1) * self.batch_size], b)
            yield batch

    def _batch(self, idx: torch.Tensor, b: int) -> tuple[torch.Tensor, torch.Tensor]:
        batch = self.imageset.images.index_select(0, idx)
        if self.augment:
            batch = random_crop_flip(batch, self.pad, self.flip, _generator(self.seed, self.epoch, self.rank, b))
        batch = batch.to(self.device, non_blocking=True)
        if self.channels_last:
            batch = batch.contiguous(memory_format=torch.channels_last)
        return normalize(batch, self._scale, self._shift), self.imageset.labels.index_select(0, idx).to(self.device)


def sample_loader(bundle, batch_size: int, *, limit_batches: int | None = None, seed: int = 0,
                  device: torch.device | str = "cpu") -> BatchLoader:
    """Un-augmented batches of `bundle`'s training split in a seeded random order: the sample that
    calibration, importance scoring and BatchNorm re-estimation should see. Splits are often
    stored sorted by class (the CIFAR-10 JPEG copy is), so their first images are all one class."""
    return BatchLoader(bundle.train, batch_size, train=True, augment=False, drop_last=False, mean=bundle.mean,
                       std=bundle.std, seed=seed, limit_batches=limit_batches, device=device)
