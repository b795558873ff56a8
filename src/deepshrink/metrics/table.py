"""The Markdown table of benchmark rows. The first row is the baseline: Δtop1 and the "×" columns
(baseline / row: how many times smaller or faster) compare every row against it."""

from __future__ import annotations

from typing import Any

RATIO_FIELDS = ("macs", "bytes")
_STANDARD = ("name", "top1", "params", "macs", "bytes", "latency_ms")
MISSING = "–"


def markdown_table(rows: list[dict[str, Any]]) -> str:
    base = rows[0]
    columns: list[tuple[str, Any]] = [("name", lambda r: _cell(r["name"]))]
    if any("top1" in r for r in rows):
        columns.append(("top1 %", lambda r: _num(r.get("top1"), "{:.2f}")))
        if "top1" in base:
            columns.append(("Δtop1", lambda r: _delta(r.get("top1"), base["top1"])))
    for key in ("params", "macs", "bytes"):
        if any(key in r for r in rows):
            fmt = _bytes if key == "bytes" else _count
            columns.append((key, lambda r, k=key, f=fmt: f(r.get(k))))
            if key in RATIO_FIELDS:
                columns.append((f"{key} ×", lambda r, k=key: _ratio(base.get(k), r.get(k))))
    for key in _ordered(k for r in rows for k in r.get("latency_ms", {})):
        columns.append((f"{key} ms", lambda r, k=key: _ms(_latency(r, k))))
        columns.append((f"{key} ×", lambda r, k=key: _ratio(_latency(base, k), _latency(r, k))))
    extras = _ordered(k for r in rows for k, v in r.items() if k not in _STANDARD and _is_scalar(v))
    for key in extras:
        columns.append((key, lambda r, k=key: _scalar(r.get(k))))
    header = "| " + " | ".join(title for title, _ in columns) + " |"
    rule = "|" + "|".join("---" if i == 0 else "---:" for i in range(len(columns))) + "|"
    body = ["| " + " | ".join(render(r) for _, render in columns) + " |" for r in rows]
    return "\n".join([header, rule, *body])


def _latency(row: dict[str, Any], key: str) -> Any:
    return row.get("latency_ms", {}).get(key)


def _ordered(keys) -> list[str]:
    return list(dict.fromkeys(keys))


def _is_scalar(value: Any) -> bool:
    return value is None or isinstance(value, (str, int, float, bool))


def _cell(text: Any) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def _num(value: Any, fmt: str) -> str:
    return MISSING if value is None else fmt.format(value)


def _delta(value: Any, base: Any) -> str:
    return MISSING if value is None or base is None else f"{value - base:+.2f}"


def _count(value: Any) -> str:
    if value is None:
        return MISSING
    for scale, unit in ((1e9, "G"), (1e6, "M"), (1e3, "K")):
        if abs(value) >= scale:
            return f"{value / scale:.2f}{unit}"
    return str(value)


def _bytes(value: Any) -> str:
    if value is None:
        return MISSING
    for scale, unit in ((1e9, "GB"), (1e6, "MB"), (1e3, "KB")):
        if abs(value) >= scale:
            return f"{value / scale:.2f} {unit}"
    return f"{value} B"


def _ms(value: Any) -> str:
    if value is None:
        return MISSING
    return f"{value:.2f}" if value >= 1 else f"{value:.3f}"


def _ratio(base: Any, value: Any) -> str:
    if base is None or value is None or value == 0:
        return MISSING
    return f"{base / value:.2f}×"


def _scalar(value: Any) -> str:
    if value is None:
        return MISSING
    if isinstance(value, float):
        return f"{value:.4g}"
    return _cell(value)
