"""One layer-selection type: module paths, regular expressions and module types.

Every pattern must match at least one layer of the model it is resolved against, so a typo in a
protected-layer list is an error instead of a silently unprotected layer (NNCF's
`IgnoredScope(validate=True)`)."""

from __future__ import annotations

import re
from typing import Any

import torch.nn as nn
from pydantic import BaseModel, ConfigDict, Field, field_validator

from deepshrink.errors import ConfigError, close_matches


class LayerSelection(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    names: tuple[str, ...] = Field(default=(), description="exact module paths, e.g. 'layer1.0.conv1'")
    regex: tuple[str, ...] = Field(default=(), description="patterns matched against the whole module path")
    types: tuple[str, ...] = Field(default=(), description="module class names, e.g. 'Conv2d' (subclasses match)")

    @field_validator("types", mode="before")
    @classmethod
    def _class_names(cls, value: Any) -> Any:
        # Accept classes as well as names from Python callers; YAML gives names.
        if isinstance(value, (list, tuple)):
            return tuple(v.__name__ if isinstance(v, type) else v for v in value)
        return value

    @field_validator("regex")
    @classmethod
    def _compiles(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for pattern in value:
            try:
                re.compile(pattern)
            except re.error as exc:
                raise ValueError(f"invalid regular expression '{pattern}': {exc}") from None
        return value

    def is_empty(self) -> bool:
        return not (self.names or self.regex or self.types)

    def resolve(self, model: nn.Module, *, what: str = "layer selection") -> set[str]:
        """Paths of the modules selected; a pattern that matches nothing raises ConfigError."""
        modules = dict(model.named_modules())
        paths = [p for p in modules if p]
        selected: set[str] = set()
        for name in self.names:
            if name not in modules or not name:
                raise ConfigError(f"{what}: name '{name}' matches no layer{close_matches(name, paths)}")
            selected.add(name)
        for pattern in self.regex:
            hits = {p for p in paths if re.fullmatch(pattern, p)}
            if not hits:
                raise ConfigError(f"{what}: regex '{pattern}' matches no layer")
            selected |= hits
        for type_name in self.types:
            hits = {p for p in paths if any(t.__name__ == type_name for t in type(modules[p]).__mro__)}
            if not hits:
                present = sorted({t.__name__ for m in modules.values() for t in type(m).__mro__})
                raise ConfigError(
                    f"{what}: type '{type_name}' matches no layer{close_matches(type_name, present)}"
                )
            selected |= hits
        return selected


def match_key(key: str, paths: list[str]) -> list[str]:
    """Paths matched by a per-layer option key: an exact path, else a full-match regex."""
    if key in paths:
        return [key]
    try:
        return [p for p in paths if re.fullmatch(key, p)]
    except re.error as exc:
        raise ConfigError(f"per-layer key '{key}' is neither a layer name nor a valid regex ({exc})") from None
