"""The recipe: model, data, seed, output directory and an ordered list of typed steps.

The whole recipe is validated before anything runs; an error names the file, line, step, field and
the allowed values."""

from __future__ import annotations

import os
from enum import Enum
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from deepshrink.errors import ConfigError, close_matches
from deepshrink.pipeline.yaml_lines import line_of, load_with_lines


class Device(str, Enum):
    auto = "auto"
    cpu = "cpu"
    cuda = "cuda"


class ModelRef(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(description="zoo name, package.module:factory, or a deepshrink model directory")
    weights: str | None = None
    options: dict[str, Any] = Field(default_factory=dict, description="build options of a zoo model, e.g. {width_mult: 0.5}")


class StepEntry(BaseModel):
    kind: str
    options: Any
    index: int


class Recipe(BaseModel):
    model_config = ConfigDict(extra="forbid", arbitrary_types_allowed=True)

    name: str | None = None
    model: ModelRef
    data: str
    image_size: int | None = Field(None, ge=8, description="imagefolder: resize on decode; detection: letterbox side (default 320)")
    device: Device = Device.auto
    seed: int = 0
    out: str | None = None
    steps: list[Any] = Field(min_length=1)

    # Filled by load_recipe: the typed options of each step, in order.
    parsed_steps: list[StepEntry] = Field(default_factory=list, exclude=True)

    def resolved(self) -> dict[str, Any]:
        """The recipe with every default filled in, as saved beside the outputs."""
        head = self.model_dump(mode="json", exclude={"steps", "parsed_steps"})
        head["steps"] = [{s.kind: s.options.model_dump(mode="json")} for s in self.parsed_steps]
        return head


def _format_error(source: str, lines: dict, loc: tuple, message: str) -> str:
    line = line_of(lines, loc)
    where = f"{source}:{line}" if line else source
    return f"{where}: {message}"


def _field_message(error: dict, model: type[BaseModel] | None) -> str:
    field = ".".join(str(p) for p in error["loc"])
    if error["type"] == "extra_forbidden" and model is not None:
        allowed = ", ".join(model.model_fields)
        return f"unknown field '{field}'{close_matches(str(error['loc'][-1]), model.model_fields)}; allowed fields: {allowed}"
    if error["type"] == "missing":
        return f"missing required field '{field}'"
    message = error["msg"].removeprefix("Value error, ")
    if not field:  # a check across fields: its message names them
        return message
    return f"field '{field}': {message} (got {error.get('input')!r})"


def parse_recipe(data: Any, *, source: str = "<recipe>", lines: dict | None = None, base_dir: Path | None = None) -> Recipe:
    from deepshrink.pipeline.steps import STEPS
    from deepshrink.pipeline.task import task_for

    lines = lines or {}
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: a recipe is a mapping with model, data and steps")
    try:
        recipe = Recipe.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        raise ConfigError(_format_error(source, lines, tuple(first["loc"]), _field_message(first, Recipe))) from None

    parsed: list[StepEntry] = []
    for index, raw in enumerate(recipe.steps):
        loc = ("steps", index)
        if isinstance(raw, str):
            raw = {raw: {}}
        if not isinstance(raw, dict) or len(raw) != 1:
            raise ConfigError(_format_error(
                source, lines, loc, f"step {index + 1}: expected one step name mapping to its options, e.g. '- prune: {{ratio: 0.5}}'"))
        kind, options = next(iter(raw.items()))
        if kind not in STEPS:
            raise ConfigError(_format_error(
                source, lines, loc,
                f"step {index + 1}: unknown step '{kind}'{close_matches(str(kind), STEPS.names())}; allowed steps: {', '.join(STEPS.names())}"))
        options_model = STEPS.get(kind).Options
        try:
            typed = options_model.model_validate(options or {})
        except ValidationError as exc:
            first = exc.errors()[0]
            message = f"step {index + 1} '{kind}': " + _field_message(first, _submodel(options_model, first["loc"]))
            raise ConfigError(_format_error(source, lines, (*loc, kind, *first["loc"]), message)) from None
        except ConfigError as exc:  # configs that validate themselves name the field in their message
            field = _field_in(str(exc), options)
            where = (*loc, kind, field) if field else (*loc, kind)
            raise ConfigError(_format_error(source, lines, where, f"step {index + 1} '{kind}': {exc}")) from None
        parsed.append(StepEntry(kind=kind, options=typed, index=index))
    recipe.parsed_steps = parsed
    task = task_for(recipe.data)
    for entry in parsed:
        try:
            task.check_step(entry.kind, entry.options)
            STEPS.get(entry.kind).check(entry.options, recipe, source=source, base_dir=base_dir)
        except ConfigError as exc:
            message = str(exc) if str(exc).startswith(source) else _format_error(
                source, lines, ("steps", entry.index), f"step {entry.index + 1} '{entry.kind}': {exc}")
            raise ConfigError(message) from None
    return recipe


def _field_in(message: str, options: Any) -> str | None:
    """The option named at the start of a config's own error message, if it is one of `options`."""
    if not isinstance(options, dict):
        return None
    return next((key for key in options if isinstance(key, str) and f"{key}:" in message), None)


def _submodel(model: type[BaseModel], loc: tuple) -> type[BaseModel] | None:
    """The pydantic model that owns the last element of `loc` (for listing allowed fields)."""
    current: Any = model
    for part in loc[:-1]:
        field = getattr(current, "model_fields", {}).get(part) if isinstance(part, str) else None
        if field is None:
            return None
        annotation = field.annotation
        current = annotation if isinstance(annotation, type) and issubclass(annotation, BaseModel) else None
        if current is None:
            return None
    return current if isinstance(current, type) and issubclass(current, BaseModel) else None


def load_recipe(path: str | os.PathLike) -> Recipe:
    path = Path(path)
    data, lines = load_with_lines(path)
    return parse_recipe(data, source=str(path), lines=lines, base_dir=path.parent)


def check_resources(recipe: Recipe, *, source: str) -> None:
    """Before any work: the data spec names something that exists, and the model builds and its
    weights fit it (the checkpoint's tensors are shape-checked by name)."""
    from deepshrink.errors import DeepShrinkError
    from deepshrink.models import resolve_model
    from deepshrink.pipeline.task import task_for

    try:
        task_for(recipe.data).check_spec(recipe.data)
    except DeepShrinkError as exc:
        raise ConfigError(f"{source}: field 'data': {exc}") from None
    try:
        resolve_model(recipe.model.name, weights=recipe.model.weights, options=recipe.model.options)
    except DeepShrinkError as exc:
        raise ConfigError(f"{source}: field 'model': {exc}") from None
