"""What every target's undo ledger shares: an append-only JSON-lines file, one ``write(2)`` per record
on an ``O_APPEND`` descriptor (two processes' records never interleave), each fsynced before
`LedgerFile.append_line` returns; a new ledger written aside and renamed into place (its directory
fsynced), and refused while the previous one there belongs to a run that did not end cleanly.

The records and what they mean are each target's own: ``bascule.targets.local.ledger`` and
``bascule.targets.kubernetes.ledger``.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Protocol, Self, TypeVar

from bascule.errors import TargetError

__all__ = ["LedgerFile", "PreviousRun", "fsync_dir", "parse_lines", "run_process_gone"]

_R = TypeVar("_R")


class _Owner(Protocol):
    @property
    def pid(self) -> int: ...

    def alive(self) -> bool: ...


PreviousRun = Callable[[Path], tuple[bool, _Owner | None]]
"""Reads the ledger already at a path: whether its run finished, and the process that ran it."""


def parse_lines(
    text: str,
    parse_record: Callable[[str], _R],
    damage: tuple[type[Exception], ...] = (ValueError, KeyError),
) -> tuple[list[_R], int]:
    """A ledger's records, in order, and how many lines could not be read (a torn last write: the
    run killed in the middle of it). Pure."""
    records: list[_R] = []
    damaged = 0
    for line in text.splitlines():
        if not line.strip():
            continue
        try:
            records.append(parse_record(line))
        except damage:
            damaged += 1
    return records, damaged


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class LedgerFile:
    """Appends lines to a ledger file, each fsynced before `append_line` returns. Thread-safe."""

    what = "undo ledger"
    """How errors name it ("Kubernetes undo ledger")."""

    def __init__(self, path: Path, fd: int) -> None:
        self.path = path
        self._fd: int | None = fd
        self._lock = threading.Lock()

    @classmethod
    def _create(cls, path: Path, previous: PreviousRun, first: Callable[[Self], None]) -> Self:
        """A new ledger at `path`, `first` having appended its first record. A ledger already
        there is replaced if its run ended; otherwise `TargetError` says whether that run is still
        alive or needs `bascule recover`."""
        if path.exists():
            finished, owner = previous(path)
            if not finished:
                if owner is not None and owner.alive():
                    raise TargetError(
                        f"a bascule run (pid {owner.pid}) is still using {path.parent}; stop it first"
                    )
                raise TargetError(
                    f"{path.parent} holds the {cls.what} of a run that did not end cleanly; "
                    f"run `bascule recover {path.parent}` first"
                )
        path.parent.mkdir(parents=True, exist_ok=True)
        temporary = path.with_name(f".{path.name}.{os.getpid()}")
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_APPEND, 0o600)
        ledger = cls(path, fd)
        try:
            first(ledger)
            os.replace(temporary, path)
            fsync_dir(path.parent)
        except BaseException:
            ledger.close()
            temporary.unlink(missing_ok=True)
            raise
        return ledger

    @classmethod
    def read_text(cls, path: Path) -> str:
        """The text of the ledger at `path` (`TargetError` when there is none)."""
        try:
            return path.read_text(encoding="utf-8", errors="replace")
        except FileNotFoundError as exc:
            raise TargetError(f"no {cls.what} at {path}") from exc

    @classmethod
    def open(cls, path: Path) -> Self:
        """Append to the ledger of a running stack (as `bascule inject` does)."""
        try:
            fd = os.open(path, os.O_WRONLY | os.O_APPEND)
        except FileNotFoundError as exc:
            raise TargetError(f"no {cls.what} at {path}") from exc
        return cls(path, fd)

    def append_line(self, text: str) -> None:
        line = (text + "\n").encode()
        with self._lock:
            if self._fd is None:
                raise ValueError(f"the ledger {self.path} is closed")
            # One write per record: with O_APPEND, two processes' records never interleave.
            written = os.write(self._fd, line)
            if written != len(line):
                raise OSError(f"short write to {self.path}: {written} of {len(line)} bytes")
            os.fsync(self._fd)

    def close(self) -> None:
        with self._lock:
            if self._fd is not None:
                os.close(self._fd)
                self._fd = None

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def run_process_gone(run_dir: Path) -> int | None:
    """The PID of the process that ran the run in `run_dir` when it is gone — every ledger there
    (each target's, ``*ledger.jsonl``) begins with a ``run`` record naming its owner, and none of
    those owners is alive; None while one is, or when no ledger names one (a run killed before it
    started anything leaves none: nothing then tells it from one just starting)."""
    from bascule.targets.local.ledger import Owner, parse_owner  # every target's ledger names it so

    owners: list[Owner] = []
    for path in sorted(run_dir.glob("*ledger.jsonl")):
        try:
            with path.open(encoding="utf-8") as f:
                first = json.loads(f.readline() or "null")
            if isinstance(first, dict) and first.get("type") == "run":
                owners.append(parse_owner(first.get("owner")))
        except (OSError, ValueError):
            continue
    if not owners or any(owner.alive() for owner in owners):
        return None
    return owners[0].pid
