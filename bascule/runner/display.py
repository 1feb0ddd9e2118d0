"""What the person running a scenario sees: the live view (`runner.live`) refreshed a few times a
second, or one line per event with ``--quiet`` (CI logs)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager

from rich.console import Console
from rich.live import Live

from bascule.runner.live import LiveState, render_live

__all__ = ["Display"]


class Display:
    def __init__(self, live: LiveState, out: Console, *, quiet: bool, origin: float) -> None:
        self.live = live
        self.out = out
        self.quiet = quiet
        self.origin = origin
        self._live: Live | None = None

    def status(self, message: str) -> None:
        """The live view's stage, and an event."""
        self.live.stage = message
        self.event(message)

    def event(self, message: str) -> None:
        """In the live view's last events; a line of its own with ``--quiet``."""
        self.live.note(message)
        if self.quiet:
            self.out.print(
                f"[{time.monotonic() - self.origin:6.1f}s] {message}", highlight=False, soft_wrap=True
            )

    def refresh(self) -> None:
        if self._live is not None:
            self._live.update(render_live(self.live))

    @contextmanager
    def shown(self) -> Iterator[None]:
        """The live view on a terminal while the block runs (nothing more with ``--quiet``)."""
        if self.quiet or not self.out.is_terminal:
            yield
            return
        with Live(render_live(self.live), console=self.out, refresh_per_second=4, transient=False) as live:
            self._live = live
            try:
                yield
            finally:
                self._live = None
