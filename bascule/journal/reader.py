"""Reading a run's journal back: its records in order, a last line cut short by a crash skipped."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

__all__ = ["JOURNAL_FILE", "JOURNAL_SCHEMA", "read_journal"]

JOURNAL_SCHEMA = "bascule.journal/1"
JOURNAL_FILE = "journal.jsonl"


def read_journal(path: str | Path) -> Iterator[dict[str, Any]]:
    """The records of a journal (its file or its run directory), in order. A last line cut short by
    a crash is skipped."""
    path = Path(path)
    file = path / JOURNAL_FILE if path.is_dir() else path
    with file.open(encoding="utf-8") as handle:
        for line in handle:
            if not line.endswith("\n"):
                return
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(record, dict):
                yield record
