"""Seeding and RNG state capture for exact resume.

What makes a resumed CPU run bit-identical to an uninterrupted one:
- shuffling and augmentation come from the BatchLoader's own generator seeded from (seed, epoch),
  so they need no saved state;
- the global RNGs (torch CPU and CUDA — dropout, stochastic depth —, Python `random`, NumPy) are
  saved at the end of every epoch and restored on resume;
- PyTorch CPU kernels are deterministic for a fixed thread count, so the run must use the same
  `num_threads` (the default is torch's, which is fixed per machine).

`torch.use_deterministic_algorithms(True)` is not switched on by default: it errors on some ops
(and on CUDA needs CUBLAS_WORKSPACE_CONFIG) while adding nothing on CPU. `seed_everything(...,
deterministic=True)` turns it on in warn-only mode and disables cuDNN autotuning, for users who
want repeatable CUDA runs at some speed cost."""

from __future__ import annotations

import random
from typing import Any

import numpy as np
import torch


def seed_everything(seed: int, *, deterministic: bool = False) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)  # also seeds every CUDA device
    if deterministic:
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.benchmark = False
        torch.backends.cudnn.deterministic = True


def rng_state() -> dict[str, Any]:
    """All global RNG states as tensors and primitives (loadable with weights_only=True)."""
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "python": random.getstate(),
        "numpy": {"kind": kind, "keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
                  "has_gauss": int(has_gauss), "cached": float(cached)},
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    np_state = state["numpy"]
    np.random.set_state((np_state["kind"], np_state["keys"].numpy().astype(np.uint32), np_state["pos"],
                         np_state["has_gauss"], np_state["cached"]))
    if "cuda" in state and torch.cuda.is_available() and len(state["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(state["cuda"])
