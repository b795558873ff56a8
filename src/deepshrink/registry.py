"""One generic registry for the things users plug in: models, importance criteria, losses."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

from deepshrink.errors import ConfigError, UnknownNameError, close_matches

T = TypeVar("T")


class Registry(Generic[T]):
    """Maps names to objects. Duplicate names are an error; unknown names list close matches."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._items: dict[str, T] = {}
        self._meta: dict[str, dict] = {}

    def register(self, name: str | None = None, **meta) -> Callable[[T], T]:
        """Decorator: `@MODELS.register("resnet20", params=269_722)`."""

        def decorator(obj: T) -> T:
            key = name or getattr(obj, "__name__", None)
            if not key:
                raise ConfigError(f"cannot register an unnamed {self.kind}")
            if key in self._items:
                raise ConfigError(f"{self.kind} '{key}' is already registered")
            self._items[key] = obj
            self._meta[key] = dict(meta)
            return obj

        return decorator

    def get(self, name: str) -> T:
        try:
            return self._items[name]
        except KeyError:
            raise UnknownNameError(
                f"unknown {self.kind} '{name}'{close_matches(name, self._items)}; "
                f"available: {', '.join(sorted(self._items))}"
            ) from None

    def meta(self, name: str) -> dict:
        self.get(name)
        return self._meta[name]

    def names(self) -> list[str]:
        return sorted(self._items)

    def __contains__(self, name: object) -> bool:
        return name in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        return len(self._items)
