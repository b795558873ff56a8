"""Options and printing shared by the command modules."""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Any, Callable

import click
from rich.console import Console
from rich.table import Table

from deepshrink.errors import ConfigError

console = Console()


def model_options(func: Callable) -> Callable:
    """--model/--weights, accepted by every command that takes a trained model."""

    @click.option(
        "--model", "model_name", required=True,
        help="Zoo name (see `deepshrink models`), package.module:factory, or a directory written by deepshrink.",
    )
    @click.option("--weights", type=click.Path(dir_okay=False), default=None, help="Checkpoint: .safetensors or a torch state dict.")
    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        return func(*args, **kwargs)

    return wrapper


def data_option(required: bool = True) -> Callable:
    # No explicit default: since click 8.3 `default=None` counts as a value and defeats `required`.
    return click.option(
        "--data", "data_spec", required=required,
        help="Dataset spec: digits | cifar10:DIR | imagefolder:PATH (directory or .tar/.tar.gz).",
    )


def parse_input_size(text: str | None) -> tuple[int, int, int] | None:
    if text is None:
        return None
    parts = text.lower().replace(",", "x").split("x")
    try:
        size = tuple(int(p) for p in parts)
    except ValueError:
        raise ConfigError(f"--input-size '{text}': expected CxHxW, e.g. 3x32x32") from None
    if len(size) != 3 or min(size) <= 0:
        raise ConfigError(f"--input-size '{text}': expected three positive integers CxHxW, e.g. 3x32x32")
    return size  # type: ignore[return-value]


def parse_int_list(text: str, option: str) -> tuple[int, ...]:
    try:
        values = tuple(int(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise ConfigError(f"{option} '{text}': expected comma-separated integers, e.g. 1,64") from None
    if not values or min(values) <= 0:
        raise ConfigError(f"{option} '{text}': expected positive integers")
    return values


def write_json_file(path: str | Path | None, payload: dict) -> None:
    if path is None:
        return
    from deepshrink.fileio import write_json

    write_json(path, payload)
    console.print(f"wrote {path}")


def print_kv_table(title: str, rows: dict[str, Any]) -> None:
    table = Table(title=title, show_header=False, title_justify="left")
    for key, value in rows.items():
        table.add_row(key, format_value(value))
    console.print(table)


def format_value(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:,.3f}" if abs(value) < 1000 else f"{value:,.0f}"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, dict):
        return json.dumps(value)
    return str(value)


def read_options_file(path: str | None, what: str) -> dict[str, Any]:
    """The YAML/JSON mapping of `what` options in `path` (--config, --recipe); {} without a file."""
    import yaml

    if not path:
        return {}
    with open(path, encoding="utf-8") as handle:
        options = yaml.safe_load(handle) or {}
    if not isinstance(options, dict):
        raise ConfigError(f"{path}: expected a mapping of {what} options")
    return options


def build_model(name: str, weights: str | None, data: Any = None):
    """A zoo (or package.module:factory) model with `weights`, shaped for `data` when given:
    its classes, input size and normalisation."""
    from deepshrink.models import resolve_model

    if data is None:
        return resolve_model(name, weights=weights)
    return resolve_model(name, weights=weights, num_classes=data.num_classes, input_size=data.input_size,
                         mean=data.mean, std=data.std)
