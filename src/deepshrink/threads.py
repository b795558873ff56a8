"""PyTorch's intra-op thread count, set for a block and restored after it.

Small, memory-bound ops (batch assembly, post-processing, kernel-sized factorisations) run faster
on one thread on a shared 2-core machine: two OpenMP threads wait on each other at every op
(measured: a CIFAR batch of 128 took 48 ms on 2 threads vs 1.5 ms on 1; a 64 x 576 SVD 40-90 ms
vs 3 ms; detection post-processing 80-120 ms vs 9 ms per image)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch


@contextlib.contextmanager
def torch_threads(threads: int) -> Iterator[None]:
    """Run the block with `threads` intra-op threads, then restore the caller's setting."""
    previous = torch.get_num_threads()
    if previous == threads:
        yield
        return
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def one_thread() -> contextlib.AbstractContextManager[None]:
    """torch_threads(1): for the small memory-bound ops described above."""
    return torch_threads(1)
