"""DeepShrink: make trained PyTorch networks smaller and faster, and prove it.

The verbs at the package root each take a model (and options) and return a new model or a result;
they are imported lazily so `import deepshrink` stays fast."""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_VERBS = {
    "create_model": "deepshrink.models",
    "list_models": "deepshrink.models",
    "load": "deepshrink.models",
    "save_model": "deepshrink.models",
    "load_data": "deepshrink.data",
    "train": "deepshrink.training",
    "evaluate": "deepshrink.metrics",
    "profile": "deepshrink.metrics",
    "export": "deepshrink.export",
    "prune": "deepshrink.pruning",
    "quantize": "deepshrink.quantization",
    "distill": "deepshrink.distillation",
    "decompose": "deepshrink.lowrank",
    "search": "deepshrink.nas",
    "compress": "deepshrink.pipeline",
}

__all__ = [*_VERBS, "__version__"]


def __getattr__(name: str) -> Any:
    if name in _VERBS:
        return getattr(importlib.import_module(_VERBS[name]), name)
    raise AttributeError(f"module 'deepshrink' has no attribute '{name}'")
