"""What every target shares: the `Transition` a fault's apply or revert reports, the way a target
holds SIGINT and SIGTERM back while it changes something (`signals_deferred`), and `ClosingTarget`,
the context manager that turns SIGTERM into an exit and always closes the target — reverting every
fault still in force — on the way out.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from types import FrameType, TracebackType
from typing import Any, Self

from bascule.plan.model import ActionOp

__all__ = ["ClosingTarget", "Transition", "signals_deferred"]


@dataclass(frozen=True)
class Transition:
    """One fault put in force or ended, and when."""

    key: str
    """The fault's key on the target: ``<session>/<action key>``."""
    op: ActionOp
    kind: str
    monotonic: float
    """``time.monotonic()`` once the change had taken effect."""
    wall: float
    """``time.time()`` at the same instant."""
    took: float
    """Seconds from the call to the change in force (the ledger's fsync included)."""
    effects: tuple[str, ...]
    """One line per effect: put in force (apply), or ended (revert; a kill or a wipe ends nothing)."""
    changed: bool = True


@contextlib.contextmanager
def signals_deferred() -> Iterator[None]:
    """Hold SIGINT and SIGTERM back while the block runs, then deliver them (main thread only;
    elsewhere a no-op, since Python runs signal handlers in the main thread only).

    A handler that notes the signal, rather than a blocked signal mask: a signal sent to the
    process is delivered to any thread that does not block it (the fault plane's, the DNS
    server's), and Python would still run its handler in the main thread in the middle of the block.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    pending: list[int] = []

    def hold(signum: int, frame: FrameType | None) -> None:
        pending.append(signum)

    previous = {signum: signal.signal(signum, hold) for signum in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, signal.SIG_DFL if handler is None else handler)
        for held in pending:
            signal.raise_signal(held)


def _terminate(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(128 + signum)


class ClosingTarget:
    """``with target:`` — SIGTERM becomes ``SystemExit`` (so that the block unwinds), and
    `close` runs on every way out. Subclasses define `close`."""

    _previous_sigterm: Any = None

    def close(self) -> Any:
        raise TypeError(f"{type(self).__name__} must define close()")

    def __enter__(self) -> Self:
        if threading.current_thread() is threading.main_thread():
            self._previous_sigterm = signal.signal(signal.SIGTERM, _terminate)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        try:
            self.close()
        finally:
            if self._previous_sigterm is not None:
                signal.signal(signal.SIGTERM, self._previous_sigterm)
                self._previous_sigterm = None
