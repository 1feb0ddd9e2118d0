"""Journal fields from the runner's own objects: JSON-ready, keys as strings."""

from __future__ import annotations

from dataclasses import asdict, is_dataclass
from typing import Any

from bascule.probes.sovereignty import Violation

__all__ = ["jsonable", "violation_json"]


def violation_json(violation: Violation) -> dict[str, Any]:
    return {
        "request_id": violation.request_id,
        "source": violation.source,
        "data_class": violation.data_class,
        "hop": asdict(violation.hop),
        "minimum": violation.minimum.value,
        "level": violation.level.value,
    }


def jsonable(value: object) -> dict[str, Any]:
    data = asdict(value) if is_dataclass(value) and not isinstance(value, type) else {"value": value}
    clean = _plain(data)
    assert isinstance(clean, dict)
    return clean


def _key(key: object) -> str:
    return "/".join(map(str, key)) if isinstance(key, tuple) else str(key)


def _plain(value: object) -> object:
    """JSON-ready: keys as strings (tuples joined with '/'), enums as values, tuples as lists."""
    if isinstance(value, dict):
        return {_key(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [_plain(v) for v in value]
    if isinstance(value, str | int | float | bool) or value is None:
        return value  # a StrEnum member is a str and serialises as its value
    return str(value)
