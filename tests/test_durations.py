from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bascule.model.durations import format_duration, parse_duration


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("90s", 90.0),
        ("2m", 120.0),
        ("14h32m", 52320.0),
        ("1h30m15s", 5415.0),
        ("250ms", 0.25),
        ("1.5s", 1.5),
        ("2d", 172800.0),
        (45, 45.0),
        (0.5, 0.5),
        ("12", 12.0),
    ],
)
def test_parses_durations(text: object, seconds: float) -> None:
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("bad", ["5x", "", "m", "2m3h", "1s1s", "-3s", True, None, [1], "1 h"])
def test_rejects_bad_durations(bad: object) -> None:
    with pytest.raises(ValueError):
        parse_duration(bad)


@given(st.integers(min_value=0, max_value=10 * 86400))
def test_format_round_trips_whole_seconds(seconds: int) -> None:
    assert parse_duration(format_duration(float(seconds))) == seconds


def test_formats_readably() -> None:
    assert format_duration(52320.0) == "14h32m"
    assert format_duration(0.25) == "250ms"
    assert format_duration(1.5) == "1.5s"
