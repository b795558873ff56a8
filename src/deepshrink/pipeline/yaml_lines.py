"""YAML with line numbers: `safe_load` plus a map from key paths to source lines, so a recipe
error can say "line 12". Uses only yaml.safe_load / compose: no tags, no code."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from deepshrink.errors import ConfigError

Path_ = tuple[Any, ...]


def load_with_lines(path: Path) -> tuple[Any, dict[Path_, int]]:
    if not path.is_file():
        raise ConfigError(f"{path}: recipe file not found")
    text = path.read_text()
    try:
        data = yaml.safe_load(text)
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError(f"{path}: invalid YAML{where}: {problem}") from None
    lines: dict[Path_, int] = {}
    if root is not None:
        _walk(root, (), lines)
    return data, lines


def _walk(node: yaml.Node, prefix: Path_, lines: dict[Path_, int]) -> None:
    lines[prefix] = node.start_mark.line + 1
    if isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            key = key_node.value
            lines[(*prefix, key)] = key_node.start_mark.line + 1
            _walk(value_node, (*prefix, key), lines)
            lines[(*prefix, key)] = key_node.start_mark.line + 1
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            _walk(item, (*prefix, index), lines)


def line_of(lines: dict[Path_, int], path: Path_) -> int | None:
    """The line of the deepest known prefix of `path`."""
    for cut in range(len(path), -1, -1):
        if tuple(path[:cut]) in lines:
            return lines[tuple(path[:cut])]
    return None
