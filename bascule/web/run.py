"""``bascule run --web``: the page of one run, fed from its journal — every record as it is written
(`Journal.subscribe`), digested into page events (`bascule.web.digest`) — whose abort button sets
the run's abort, the path Ctrl-C and the guardrails take: the run stops and everything is rolled
back."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from bascule.journal import Journal
from bascule.web.digest import RunDigest
from bascule.web.page import PageMode, render_page
from bascule.web.server import Feed, PageServer

__all__ = ["ABORT_REASON", "RunPage"]

ABORT_REASON = "aborted from the game-day page"


class RunPage:
    """Subscribes to `journal` at once (construct it before the run's first record); serves from
    `start`. `abort` is called with `ABORT_REASON` when the page's abort button is pressed."""

    def __init__(self, journal: Journal, abort: Callable[[str], None], title: str, *, port: int = 0) -> None:
        self.feed = Feed(journal.origin)
        self._digest = RunDigest()
        self._abort = abort
        self.server = PageServer(
            self.feed,
            lambda token: render_page(PageMode.RUN, token, title),
            {"abort": self._on_abort},
            port=port,
        )
        journal.subscribe(self._on_record)

    def _on_record(self, record: Mapping[str, Any]) -> None:
        for event in self._digest.take(record):
            self.feed.publish(event)

    def _on_abort(self, form: Mapping[str, Any]) -> Mapping[str, Any]:
        self._abort(ABORT_REASON)
        return {"message": "abort asked: the run stops and rolls everything back"}

    def start(self) -> str:
        """Serve; the page's URL with its token. Raises `OSError` when the port cannot be bound."""
        return self.server.start()

    def stop(self) -> None:
        self.server.stop()
