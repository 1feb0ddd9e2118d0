"""What every proxy route state shares: its `ProxyMode`, the checks of its values, and the readers
that `faultstate.parse_proxy_fault` and `answerstate.parse_answer_state` build states with."""

from __future__ import annotations

import math
from collections.abc import Mapping
from enum import Enum
from typing import TypeVar

__all__ = [
    "MISTRAL_RATE_LIMIT_BODY",
    "ProxyMode",
    "check_counted",
    "check_non_negative",
    "check_ratio",
    "read_body",
    "read_choice",
    "read_count",
    "read_number",
]

MISTRAL_RATE_LIMIT_BODY = (
    b'{"object":"error","message":"Rate limit exceeded","type":"rate_limited","param":null,"code":"1300"}'
)
"""The 429 body Mistral's API sends (see INCIDENTS.md), used by `Throttle` unless told otherwise."""


class ProxyMode(Enum):
    """What a proxy route does to the traffic it relays."""

    PASS = "pass"
    BLACKHOLE = "blackhole"
    REFUSE = "refuse"
    LATENCY = "latency"
    HTTP_ERROR = "http_error"
    THROTTLE = "throttle"
    HANG = "hang"
    TTFT = "ttft"
    STREAM_CUT = "stream_cut"
    TOKEN_RATE = "token_rate"
    DEGRADE = "degrade"
    BANDWIDTH = "bandwidth"
    LIMIT_DATA = "limit_data"
    SLICER = "slicer"
    SLOW_CLOSE = "slow_close"
    MODEL_SWAP = "model_swap"
    PARTIAL_INDEX = "partial_index"
    EMBEDDING_MISMATCH = "embedding_mismatch"

    # The relay tests a mode against sets of modes for every chunk it passes; Enum's own hash is a
    # Python function (of the member's name), this one is C. Members are singletons and compare by
    # identity, so hashing by identity is consistent with equality.
    __hash__ = object.__hash__


def check_non_negative(what: str, value: float) -> None:
    if not (math.isfinite(value) and value >= 0):
        raise ValueError(f"{what} must be a finite number >= 0, got {value!r}")


def check_ratio(ratio: float) -> None:
    if not (math.isfinite(ratio) and 0.0 <= ratio <= 1.0):
        raise ValueError(f"ratio must be within [0, 1], got {ratio!r}")


def check_counted(count: int | None, every: int | None, ratio: float) -> None:
    if count is not None and every is not None:
        raise ValueError("give count or every, not both")
    for name, value in (("count", count), ("every", every)):
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
            raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
    if (count is not None or every is not None) and ratio != 1.0:
        raise ValueError("a counted fault (count or every) takes no ratio")


def read_number(data: Mapping[str, object], key: str, default: float) -> float:
    value = data.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"{key} must be a number, got {value!r}")
    return float(value)


def read_count(data: Mapping[str, object], key: str) -> int | None:
    value = data.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{key} must be an integer, got {value!r}")
    return value


def read_body(data: Mapping[str, object]) -> str | bytes:
    body = data.get("body", MISTRAL_RATE_LIMIT_BODY)
    if not isinstance(body, str | bytes):
        raise ValueError(f"body must be a string, got {body!r}")
    return body


_E = TypeVar("_E", bound=Enum)


def read_choice(enum: type[_E], value: object, key: str) -> _E:
    try:
        return enum(value)
    except ValueError:
        known = ", ".join(str(m.value) for m in enum)
        raise ValueError(f"{key} must be one of {known}, got {value!r}") from None
