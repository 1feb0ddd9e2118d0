"""A run with its game-day page, in a thread of the test: the page's URL as the run prints it, and
the run's outcome once it ends. Shared by the page's tests (tests/test_web*.py)."""

from __future__ import annotations

import io
import re
import threading
import time
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

from rich.console import Console

from bascule.reports.files import score_run
from bascule.runner.run import RunOptions, RunOutcome, run_scenario
from bascule.targets.base import TargetStarter

_URL = re.compile(r"game-day page: (http://127\.0\.0\.1:\d+/\?token=[\w-]+)")


@dataclass
class WebRun:
    options: RunOptions
    printed: io.StringIO = field(default_factory=io.StringIO)
    outcome: RunOutcome | None = None
    error: BaseException | None = None
    thread: threading.Thread | None = None

    def start(self) -> WebRun:
        def go() -> None:
            try:
                self.outcome = run_scenario(
                    self.options,
                    console=Console(file=self.printed, width=200),
                    scoring=partial(score_run, min_score=None),
                )
            except BaseException as exc:  # the test thread reports it
                self.error = exc

        self.thread = threading.Thread(target=go, name="web-run", daemon=True)
        self.thread.start()
        return self

    def url(self, timeout: float = 30.0) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = _URL.search(self.printed.getvalue())
            if found:
                return found.group(1)
            assert self.error is None, self.error
            assert self.thread is not None and (self.thread.is_alive() or found), self.printed.getvalue()
            time.sleep(0.02)
        raise AssertionError(f"no page URL printed: {self.printed.getvalue()}")

    def wait(self, timeout: float = 60.0) -> RunOutcome:
        assert self.thread is not None
        self.thread.join(timeout)
        assert not self.thread.is_alive(), "the run did not end"
        assert self.error is None, self.error
        assert self.outcome is not None
        return self.outcome


def web_run(scenario: Path, starter: TargetStarter, out: Path, *, port: int = 0) -> WebRun:
    return WebRun(RunOptions(scenario, starter, out=out, quiet=True, web_port=port)).start()
