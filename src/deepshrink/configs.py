"""The base of every typed options class: unknown fields rejected, frozen, and validation errors
raised as one ConfigError line naming each bad field (with the known options for a typo)."""

from __future__ import annotations

from typing import Any, get_args

from pydantic import BaseModel, ConfigDict, ValidationError

from deepshrink.errors import ConfigError


class StrictConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    def __init__(self, **options: Any) -> None:
        try:
            super().__init__(**options)
        except ValidationError as exc:
            raise ConfigError(f"invalid {type(self).__name__}: {format_errors(exc, type(self))}") from None


def format_errors(exc: ValidationError, cls: type[BaseModel]) -> str:
    """One line naming every bad field: 'lr: Input should be greater than 0; optimizer: ...'."""
    parts = []
    for err in exc.errors():
        field = ".".join(str(p) for p in err["loc"])
        message = err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            message = f"unknown option (known: {', '.join(_model_at(cls, err['loc'][:-1]).model_fields)})"
        elif field:
            message = f"{message}, got {err['input']!r}"
        parts.append(f"{field}: {message}" if field else message)
    return "; ".join(parts)


def _model_at(cls: type[BaseModel], loc: tuple) -> type[BaseModel]:
    """The (nested) config class that holds the field at `loc`, e.g. TrainConfig for ('train', 'x')."""
    for part in loc:
        field = cls.model_fields.get(part) if isinstance(part, str) else None
        annotation = field.annotation if field is not None else None
        nested = [a for a in (annotation, *get_args(annotation)) if isinstance(a, type) and issubclass(a, BaseModel)]
        if not nested:
            break
        cls = nested[0]
    return cls
