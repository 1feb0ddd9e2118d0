"""How a long command is stopped early — one path for `run`, `suite`, `compare`, `stack up`:

- `Abort`: set once by a guardrail or a signal; a second signal hurries (processes are killed
  rather than stopped, and nothing more is written than the journal and the ledger need).
  A command that makes several runs (`suite`, `compare`) gives each its `child()`: a signal
  reaches the command and the run in progress, a guardrail ends that run alone.
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
    parent: Abort | None = field(default=None, repr=False, compare=False)
    children: list[Abort] = field(default_factory=list, repr=False, compare=False)

    def set(self, reason: str, code: int = ExitCode.ABORTED) -> None:
        """Stop this run (a guardrail, an error): its children too, never its parent."""
        if self.event.is_set():
            self.hurry = True
        else:
            self.reason, self.code = reason, code
            self.event.set()
        for child in self.children:
            child.set(reason, code)

    def interrupt(self, signum: int) -> None:
        """A signal: it stops this run and, up the chain, the command that started it."""
        reason = f"interrupted by {signal.Signals(signum).name}"
        if self.parent is not None:
            self.parent.interrupt(signum)  # reaches this one through its children
        else:
            self.set(reason)

    def child(self) -> Abort:
        """The abort of one run of several: set with this one, and interrupting it interrupts this
        one; a guardrail that sets it leaves this one (and the runs to come) alone."""
        child = Abort(parent=self)
        self.children[:] = [child]
        if self.is_set:
            child.set(self.reason, self.code)
        return child

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
        abort.interrupt(signum)

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
            abort.interrupt(signum)
        raise StepInterruptedError(signal.Signals(signum).name)

    previous = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for s, h in previous.items():
            signal.signal(s, signal.SIG_DFL if h is None else h)
