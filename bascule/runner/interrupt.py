"""How a long command is stopped early — one path for `run`, `suite`, `compare`, `stack up`:

- `Abort`: set once by a guardrail or a signal; a second signal hurries (processes are killed
  rather than stopped, and nothing more is written than the journal and the ledger need).
- `signals`: turns SIGINT and SIGTERM into that abort while the block runs. It installs its own
  handlers whatever was there before — a SIGINT ignored by the parent (a job started with ``&``
  by a script) must not make Ctrl-C do nothing — and restores the previous ones on the way out.
  Handlers only set the abort: the code that waits (the run's loop, the stack's start-up, a
  suite between two runs) looks at it, so that nothing is interrupted halfway.

The exit code of an interrupted command is 3 (`ExitCode.ABORTED`), as for a guardrail.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from types import FrameType

from bascule.exit_codes import ExitCode

__all__ = ["Abort", "StepInterruptedError", "signalled", "signals", "stoppable"]

_received: list[int] = []


def signalled() -> bool:
    """Whether a SIGINT or SIGTERM reached a handler of this module in this process."""
    return bool(_received)


@dataclass
class Abort:
    reason: str = ""
    code: int = ExitCode.ABORTED
    hurry: bool = False
    """Set by a second abort (a second Ctrl-C): processes are killed instead of stopped."""
    event: threading.Event = field(default_factory=threading.Event)

    def set(self, reason: str, code: int = ExitCode.ABORTED) -> None:
        if self.event.is_set():
            self.hurry = True
            return
        self.reason, self.code = reason, code
        self.event.set()

    @property
    def is_set(self) -> bool:
        return self.event.is_set()

    @property
    def interrupted(self) -> bool:
        """Set by a signal (rather than a guardrail)."""
        return self.is_set and self.reason.startswith("interrupted by")


@contextmanager
def signals(abort: Abort) -> Iterator[Abort]:
    """SIGINT and SIGTERM set `abort` while the block runs (main thread only; elsewhere a no-op)."""
    if threading.current_thread() is not threading.main_thread():
        yield abort
        return

    def handler(signum: int, frame: FrameType | None) -> None:
        _received.append(signum)
        abort.set(f"interrupted by {signal.Signals(signum).name}")

    previous = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield abort
    finally:
        for s, h in previous.items():
            signal.signal(s, signal.SIG_DFL if h is None else h)


class StepInterruptedError(Exception):
    """A signal stopped a step that can be left undone (`stoppable`)."""


@contextmanager
def stoppable(abort: Abort | None = None) -> Iterator[None]:
    """SIGINT and SIGTERM raise `StepInterruptedError` in the block — for a step after the run that
    can be left undone and done later (the reports) — and set `abort` (a suite's: no further run
    starts).
    Main thread only; elsewhere a no-op."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, frame: FrameType | None) -> None:
        _received.append(signum)
        if abort is not None:
            abort.set(f"interrupted by {signal.Signals(signum).name}")
        raise StepInterruptedError(signal.Signals(signum).name)

    previous = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for s, h in previous.items():
            signal.signal(s, signal.SIG_DFL if h is None else h)
