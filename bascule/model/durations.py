"""Durations at the YAML boundary: ``"90s"``, ``"2m"``, ``"14h32m"``, ``"250ms"`` or a number of
seconds. Inside bascule every duration is a float number of seconds.

Every duration lies between 0 and ``MAX_DURATION`` (30 days: the longest cloud incidents last
hours, and a run is real time). ``Timeout``, ``Interval`` and ``Lifetime`` are durations that
must also be above 0, each saying why."""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from typing import Annotated, Any

from pydantic import BeforeValidator

__all__ = [
    "MAX_DURATION",
    "Duration",
    "Interval",
    "Lifetime",
    "Timeout",
    "format_duration",
    "parse_duration",
]

MAX_DURATION = 30 * 86400.0

_UNITS = {"d": 86400.0, "h": 3600.0, "m": 60.0, "s": 1.0, "ms": 0.001}
_ORDER = ["d", "h", "m", "s", "ms"]
_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|d|h|m|s)")


def parse_duration(value: Any) -> float:
    """Seconds from a YAML duration. Raises ``ValueError`` with a message meant for the user."""
    if isinstance(value, bool):
        raise ValueError(f"expected a duration like '90s', '2m' or '14h32m', got {_shown(value)}")
    if isinstance(value, int | float):
        seconds = float(value)
    elif isinstance(value, str):
        seconds = _parse_text(value.strip())
    else:
        raise ValueError(f"expected a duration like '90s', '2m' or '14h32m', got {_shown(value)}")
    if not math.isfinite(seconds) or seconds < 0:
        raise ValueError(f"a duration must be a finite number of seconds ≥ 0, got {_shown(value)}")
    if seconds > MAX_DURATION:
        raise ValueError(
            f"a duration must be at most 30d (an incident or a run longer than a month is surely "
            f"a mistake), got {_shown(value)}"
        )
    return seconds


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else f"{text[:37]}..."


def _above_zero(why: str) -> Callable[[Any], float]:
    def parse(value: Any) -> float:
        seconds = parse_duration(value)
        if seconds <= 0:
            raise ValueError(f"must be above 0s: {why}")
        return seconds

    return parse


def _parse_text(text: str) -> float:
    bad = ValueError(
        f"invalid duration {_shown(text)}: expected a number of seconds or parts like '1h', '30m', "
        "'90s', '250ms' in decreasing order (e.g. '14h32m')"
    )
    if not text:
        raise bad
    try:
        return float(text)
    except ValueError:
        pass
    position = 0
    total = 0.0
    last_rank = -1
    for match in _PART.finditer(text):
        if match.start() != position:
            raise bad
        rank = _ORDER.index(match.group(2))
        if rank <= last_rank:
            raise bad
        last_rank = rank
        total += float(match.group(1)) * _UNITS[match.group(2)]
        position = match.end()
    if position != len(text):
        raise bad
    return total


def format_duration(seconds: float) -> str:
    """The shortest readable form: ``52320.0`` → ``14h32m``, ``1.5`` → ``1.5s``, ``0.25`` → ``250ms``."""
    if seconds < 0:
        return "-" + format_duration(-seconds)
    if seconds == 0:
        return "0s"
    if seconds < 1:
        return f"{seconds * 1000:.4g}ms"
    if seconds < 60:
        return f"{seconds:.4g}s"
    whole = round(seconds)
    if abs(seconds - whole) > 0.05:
        minutes, rest = divmod(seconds, 60)
        hours, minutes = divmod(int(minutes), 60)
        head = f"{hours}h" if hours else ""
        return f"{head}{minutes}m{rest:.3g}s"
    days, whole = divmod(whole, 86400)
    hours, whole = divmod(whole, 3600)
    minutes, secs = divmod(whole, 60)
    parts = [(days, "d"), (hours, "h"), (minutes, "m"), (secs, "s")]
    return "".join(f"{n}{unit}" for n, unit in parts if n)


Duration = Annotated[float, BeforeValidator(parse_duration)]
"""A pydantic field type: accepts YAML durations, holds float seconds."""

Timeout = Annotated[float, BeforeValidator(_above_zero("a zero timeout gives up before anything can answer"))]
"""How long to wait for an answer: above 0."""

Interval = Annotated[float, BeforeValidator(_above_zero("a zero interval would repeat without pause"))]
"""A period between repeated actions or the window they are counted over: above 0."""

Lifetime = Annotated[float, BeforeValidator(_above_zero("a zero lifetime expires as soon as it is issued"))]
"""How long something issued stays valid: above 0."""
