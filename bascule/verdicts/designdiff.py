"""What changed in a design file between a baseline and now, field by field, so that a regression
is shown beside its likely cause (docs/repeats.md, "Against a baseline"). Pure.

Both texts are read as YAML and flattened to dotted paths — ``routing.circuit_breaker.open_for`` —
with list items named by their ``id`` where they have one (``regions[aws/us-east-1].cost``), by
their index otherwise. A text that is not a YAML mapping is compared line by line instead.
"""

from __future__ import annotations

import difflib
import hashlib
from typing import Any

import yaml

__all__ = ["design_differences", "design_digest"]


def design_digest(text: str) -> str:
    """The SHA-256 of a design file's text (UTF-8), hex."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _flatten(value: Any, path: str, into: dict[str, Any]) -> None:
    if isinstance(value, dict) and value:
        for key, item in value.items():
            _flatten(item, f"{path}.{key}" if path else str(key), into)
    elif isinstance(value, list) and value and all(isinstance(i, dict) and "id" in i for i in value):
        for item in value:
            rest = {k: v for k, v in item.items() if k != "id"}
            _flatten(rest or item["id"], f"{path}[{item['id']}]", into)
    elif isinstance(value, list) and value and any(isinstance(i, dict | list) for i in value):
        for index, item in enumerate(value):
            _flatten(item, f"{path}[{index}]", into)
    else:
        into[path] = value


def _show(value: Any) -> str:
    if isinstance(value, str):
        return value
    return yaml.safe_dump(value, default_flow_style=True, width=10_000).strip().removesuffix("...").strip()


def _fields(text: str) -> dict[str, Any] | None:
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError:
        return None
    if not isinstance(data, dict):
        return None
    flat: dict[str, Any] = {}
    _flatten(data, "", flat)
    return flat


def design_differences(then: str, now: str) -> tuple[str, ...]:
    """One line per field that differs (``routing.circuit_breaker.open_for: 3s → 30s``, ``… added``,
    ``… removed``), in the order of the fields; ``()`` when the designs are the same."""
    before, after = _fields(then), _fields(now)
    if before is None or after is None:
        diff = difflib.unified_diff(then.splitlines(), now.splitlines(), lineterm="", n=0)
        return tuple(line for line in diff if line[:1] in "+-" and line[:3] not in ("---", "+++"))
    lines = []
    for key in dict.fromkeys([*before, *after]):
        if key not in after:
            lines.append(f"{key}: {_show(before[key])} removed")
        elif key not in before:
            lines.append(f"{key}: {_show(after[key])} added")
        elif before[key] != after[key]:
            lines.append(f"{key}: {_show(before[key])} → {_show(after[key])}")
    return tuple(lines)
