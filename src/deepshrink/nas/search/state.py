"""The search state, written atomically after every generation: what was asked (fingerprint),
the generation reached, the population, every candidate evaluated so far (the cache), the history
and the latency table. A search started again with the same options resumes from it."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from deepshrink.errors import ConfigError
from deepshrink.fileio import read_json, write_json

STATE_FILE = "search_state.json"
STATE_VERSION = 1


@dataclass
class SearchState:
    fingerprint: dict[str, Any]
    generation: int = -1  # last completed generation; 0 is the initial population
    population: list[tuple[int, ...]] = field(default_factory=list)
    cache: dict[str, dict] = field(default_factory=dict)  # genome key -> candidate record
    history: list[dict] = field(default_factory=list)
    latency: dict | None = None  # LatencyTable.to_dict()

    def to_dict(self) -> dict[str, Any]:
        return {"version": STATE_VERSION, "fingerprint": self.fingerprint, "generation": self.generation,
                "population": [list(g) for g in self.population], "cache": self.cache, "history": self.history,
                "latency": self.latency}


def genome_key(genome: tuple[int, ...]) -> str:
    return ",".join(map(str, genome))


def save_state(out_dir: Path, state: SearchState) -> Path:
    return write_json(out_dir / STATE_FILE, state.to_dict())


def load_state(out_dir: Path, fingerprint: dict[str, Any]) -> SearchState | None:
    """The saved state, or None when there is none; a state from different options is an error."""
    path = out_dir / STATE_FILE
    if not path.is_file():
        return None
    data = read_json(path)
    if data.get("version") != STATE_VERSION:
        raise ConfigError(f"{path}: search state version {data.get('version')!r} is not {STATE_VERSION}")
    saved = data.get("fingerprint", {})
    if saved != fingerprint:
        differing = _differing(saved, fingerprint)
        raise ConfigError(f"{path}: written by a search with different options ({', '.join(differing)}); "
                          "use another output directory or delete the file to start over")
    return SearchState(saved, data["generation"], [tuple(g) for g in data["population"]], data["cache"],
                       data["history"], data.get("latency"))


def _differing(a: Any, b: Any, prefix: str = "") -> list[str]:
    """Dotted paths of the leaves where two fingerprints differ, e.g. ['config.round_to']."""
    if not (isinstance(a, dict) and isinstance(b, dict)):
        return [prefix] if a != b else []
    return [path for key in sorted(set(a) | set(b), key=str)
            for path in _differing(a.get(key), b.get(key), f"{prefix}.{key}" if prefix else str(key))]


def model_fingerprint(space_genes: list, base: dict[str, float]) -> dict[str, Any]:
    """Identifies the model searched: its prunable groups, their sizes and the unpruned counts."""
    return json.loads(json.dumps({"genes": [[g.group, g.size, list(g.kept)] for g in space_genes], "base": base}))
