"""How a run is stopped early: an `Abort` set once by a guardrail or a signal (a second one hurries
the rollback), and `signals`, which turns SIGINT and SIGTERM into that abort while the run lasts."""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from types import FrameType

from bascule.exit_codes import ExitCode

__all__ = ["Abort", "signals"]


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


@contextmanager
def signals(abort: Abort) -> Iterator[None]:
    def handler(signum: int, frame: FrameType | None) -> None:
        abort.set(f"interrupted by {signal.Signals(signum).name}")

    previous = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for s, h in previous.items():
            signal.signal(s, h)
