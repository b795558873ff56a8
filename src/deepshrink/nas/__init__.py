"""Lightweight architecture search and transforms. Importing this package registers the
"depthwise_separable" and "ghost" model transforms."""

from deepshrink.nas import search  # noqa: F401  a callable subpackage: deepshrink.nas.search(model, data, config)
from deepshrink.nas.transforms import to_depthwise_separable, to_ghost

__all__ = ["to_depthwise_separable", "to_ghost"]
