"""Typed exceptions. Every error a user can cause is a DeepShrinkError whose message names the
file, field, layer or tensor at fault; the CLI prints it on one line and exits non-zero."""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class DeepShrinkError(Exception):
    """Base class: a problem with the user's input or environment, reported without traceback."""

    exit_code = 2


class ConfigError(DeepShrinkError):
    """A recipe, option or argument is invalid (names the field and the allowed values)."""


class UnknownNameError(ConfigError):
    """A name looked up in a registry does not exist (lists close matches)."""


class DataError(DeepShrinkError):
    """A dataset spec, file or image cannot be read (names the path)."""


class CheckpointError(DeepShrinkError):
    """A checkpoint cannot be loaded into a model (names the tensor and the shapes)."""


class ModelError(DeepShrinkError):
    """A model cannot be built, traced or transformed (names the layer or graph node)."""


class UnsupportedOpError(ModelError):
    """A graph contains an op a transform does not understand (names the op and the node)."""


class VerificationError(ModelError):
    """A model transform changed the function it promised to keep (names the group or layer)."""


class ExportError(DeepShrinkError):
    """A model could not be exported or run in a deployment runtime."""


class BudgetError(ConfigError):
    """A requested budget (ratio, MACs, latency, size) cannot be met; says what is achievable."""


def close_matches(name: str, candidates: Iterable[str], n: int = 3) -> str:
    """A ' (did you mean: a, b?)' suffix for error messages, or '' when nothing is close."""
    matches = difflib.get_close_matches(name, list(candidates), n=n, cutoff=0.5)
    return f" (did you mean: {', '.join(matches)}?)" if matches else ""
