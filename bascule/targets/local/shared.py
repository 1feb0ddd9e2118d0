"""One fork server for all the runs of one command (`bascule suite`, `compare`, ``run --repeat``):
started once, before the first run, and lent to each run's `LocalStack` instead of a fork server of
its own — so that a suite imports the reference stack's services once, not once a run
(docs/performance.md, "Suites: one fork server for all their runs").

Only the interpreter is shared, never state: the server imports the services and creates no
thread, app, event loop or client (`bascule.stack.forkserver`); each run's services are fresh
forks of it, started and stopped by that run's supervisor, their logs and ledger the run's own.

Its own undo ledger (``ledger.jsonl`` in the command's output directory, beside the runs'
directories) names the server as ``fork-server`` from before it starts until it is stopped, so that
`bascule recover` finds it even between two runs when the command is killed by SIGKILL; each run's
ledger names it too, as a process that run used. `shared_fork_server` stops it on every exit path
of the ``with`` block (an error, or SIGINT/SIGTERM turned into an abort); should the command be
killed, the end of its channel ends the server as well. A server that died is not lent again: the
next run starts its own (or starts its services cold, as `fork_refusal` decides).
"""

from __future__ import annotations

import secrets
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Final

from bascule.errors import TargetError
from bascule.model.loading import read_design
from bascule.stack.layout import layout
from bascule.stack.spawn import ForkServer, fork_refusal
from bascule.stack.supervisor import process_start_time
from bascule.targets.local.ledger import LEDGER_FILE, ClosedRecord, Ledger, ProcessRecord
from bascule.targets.local.procfs import MARKER_ENV

__all__ = ["SHARED_LEDGER_DESIGN", "lent_fork_server", "needs_fork_server", "shared_fork_server"]

SHARED_LEDGER_DESIGN: Final = "(fork server shared by the runs below)"
"""What the shared ledger's ``run`` record names as its design: it runs no design itself."""

_lock = threading.Lock()
_lent: list[ForkServer] = []
"""The server lent now (at most one), under `_lock`."""


def needs_fork_server(designs: Iterable[Path]) -> bool:
    """Whether a command running these designs has a use for a shared fork server: one of them
    starts a reference service (own services always start cold). A design that cannot be read
    counts as one that does: its run says why."""
    for path in designs:
        try:
            if layout(read_design(path)).forks:
                return True
        except Exception:
            return True
    return False


def lent_fork_server() -> ForkServer | None:
    """The fork server of the command in progress, while it is alive; else None."""
    with _lock:
        forks = _lent[0] if _lent else None
    return forks if forks is not None and forks.alive else None


@contextmanager
def shared_fork_server(
    directory: Path, *, say: Callable[[str], None] | None = None, needed: bool = True
) -> Iterator[int | None]:
    """Start a fork server lent to every `LocalStack` started inside the block; yield its PID, or
    None when there is none (not `needed`: `needs_fork_server`; fork is unsafe or unavailable here,
    ``BASCULE_FORK_SERVER=0``, it did not start, or a block around this one already lends one:
    that one goes on serving).

    When `directory` holds the ledger of such a command that is alive or was not recovered, `say`
    tells so and no server is shared: each run starts its own."""
    tell = say or (lambda _: None)
    with _lock:
        nested = bool(_lent)
    if nested or not needed or fork_refusal() is not None:
        yield None
        return
    directory.mkdir(parents=True, exist_ok=True)
    marker = secrets.token_hex(16)
    refused: str | None = None
    try:
        ledger = Ledger.create(directory / LEDGER_FILE, design=SHARED_LEDGER_DESIGN, marker=marker)
    except TargetError as exc:
        refused = str(exc)
    if refused is not None:
        tell(f"no fork server shared by the runs: {refused}")
        yield None
        return
    forks: ForkServer | None = None
    try:
        try:
            forks = ForkServer.start(directory / "fork-server.log", env={MARKER_ENV: marker})
        except OSError as exc:
            tell(f"no fork server shared by the runs (it did not start: {exc})")
        if forks is not None:
            start_time = process_start_time(forks.pid)
            if start_time is not None:
                ledger.append(ProcessRecord("fork-server", forks.pid, start_time, time.time()))
            with _lock:
                _lent.append(forks)
            tell(f"fork server pid {forks.pid}, shared by the runs")
        yield None if forks is None else forks.pid
    finally:
        with _lock:
            if forks is not None and forks in _lent:
                _lent.remove(forks)
        try:
            if forks is not None:
                forks.stop()
            ledger.append(ClosedRecord(time.time()))
        finally:
            ledger.close()
