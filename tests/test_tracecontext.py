"""W3C trace context: what bascule sends and what it accepts back."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bascule.tracecontext import new_span_id, new_trace_id, parse_traceparent, traceparent


def test_a_new_trace_id_round_trips_through_its_header() -> None:
    trace_id = new_trace_id()
    header = traceparent(trace_id)
    assert len(trace_id) == 32
    assert header.startswith(f"00-{trace_id}-") and header.endswith("-01")
    assert parse_traceparent(header) == trace_id
    assert parse_traceparent(header.encode()) == trace_id


def test_the_specification_examples() -> None:
    example = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
    assert parse_traceparent(example) == "4bf92f3577b34da6a3ce929d0e0e4736"
    assert parse_traceparent(example.upper()) == "4bf92f3577b34da6a3ce929d0e0e4736"
    # a later version may add fields; version 00 may not
    assert parse_traceparent("01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-xyz") is not None
    assert parse_traceparent(example + "-xyz") is None


@pytest.mark.parametrize(
    "header",
    [
        None,
        "",
        "00-00000000000000000000000000000000-00f067aa0ba902b7-01",  # invalid trace id
        "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",  # invalid span id
        "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",  # forbidden version
        "00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01",  # short trace id
        "garbage",
    ],
)
def test_an_invalid_header_is_ignored(header: str | None) -> None:
    assert parse_traceparent(header) is None


@given(st.binary(max_size=80))
def test_any_bytes_parse_to_a_trace_id_or_none(value: bytes) -> None:
    parsed = parse_traceparent(value)
    assert parsed is None or (len(parsed) == 32 and parsed != "0" * 32)


def test_span_ids_differ() -> None:
    assert len({new_span_id() for _ in range(100)}) == 100
