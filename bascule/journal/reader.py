"""Reading a run's journal back: its records in order, a last line cut short by a crash skipped.

Parsed with msgspec, several times faster than the standard library's JSON on a journal of a
million raw samples (docs/performance.md). `scan_journal` goes further for the metrics: a sample
record, most of such a journal, is decoded straight into a `SampleRow` holding only the fields the
metrics read, the rest of its line skipped without building a dict.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import msgspec

__all__ = ["JOURNAL_FILE", "JOURNAL_SCHEMA", "HopRow", "SampleRow", "read_journal", "scan_journal"]

JOURNAL_SCHEMA = "bascule.journal/1"
JOURNAL_FILE = "journal.jsonl"


class HopRow(msgspec.Struct, frozen=True, gc=False):
    """One hop of a sample record, as much of it as decides which region served the request."""

    component: str | None = None
    region: str | None = None
    status: int | None = None
    relayed: bool = True


class SampleRow(msgspec.Struct, frozen=True, gc=False):
    """A journal ``sample`` record (docs/journal.md), as much of it as the metrics read. Decoded only
    from a well-formed record: one with a field of another kind is handed on as a dict instead."""

    type: str = ""
    t: float | None = None
    started: float | None = None
    latency: float | None = None
    source: str | None = None
    kind: str | None = None
    ok: bool = False
    data_class: str | None = None
    entry_region: str | None = None
    hops: list[HopRow] | None = None


_SAMPLE_PREFIX = b'{"type":"sample",'
"""How `bascule.journal.Journal` starts every sample record (``type`` first, no spaces)."""
_decode_any = msgspec.json.Decoder().decode
_decode_sample = msgspec.json.Decoder(SampleRow).decode


def _journal_file(path: str | Path) -> Path:
    path = Path(path)
    return path / JOURNAL_FILE if path.is_dir() else path


def _parse(line: bytes) -> dict[str, Any] | None:
    try:
        record = _decode_any(line)
    except msgspec.DecodeError:
        # msgspec refuses what the standard library writes for a NaN or an infinity; the journal
        # writer may have written one.
        try:
            record = json.loads(line)
        except ValueError:
            return None
    return record if isinstance(record, dict) else None


def read_journal(path: str | Path) -> Iterator[dict[str, Any]]:
    """The records of a journal (its file or its run directory), in order. A last line cut short by
    a crash is skipped, and so is a line that is not a JSON object."""
    with _journal_file(path).open("rb") as handle:
        for line in handle:
            if not line.endswith(b"\n"):
                return
            record = _parse(line)
            if record is not None:
                yield record


def scan_journal(path: str | Path) -> Iterator[SampleRow | dict[str, Any]]:
    """`read_journal` for `bascule.metrics.compute_metrics`: the same records in the same order,
    but each well-formed sample record as a `SampleRow`. Memory is that of one line at a time."""
    decode_sample = _decode_sample
    prefix = _SAMPLE_PREFIX
    with _journal_file(path).open("rb") as handle:
        for line in handle:
            if not line.endswith(b"\n"):
                return
            if line.startswith(prefix):
                try:
                    row = decode_sample(line)
                except msgspec.DecodeError:  # ValidationError included: a field of another kind
                    row = None
                # A key given twice keeps its last value in a dict: so must the record's type.
                if row is not None and row.type == "sample":
                    yield row
                    continue
            record = _parse(line)
            if record is not None:
                yield record
