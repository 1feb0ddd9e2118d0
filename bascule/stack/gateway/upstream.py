"""One call to an upstream: how it fails, when retries stop, which region is tried next."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import httpx
from tenacity import RetryCallState
from tenacity.stop import stop_base

from bascule.stack.breaker import RetryBudget, Ticket
from bascule.stack.routing import Router

__all__ = [
    "Attempt",
    "BudgetStop",
    "Cursor",
    "ExhaustedError",
    "NoCredentialsError",
    "RejectedError",
    "UpstreamError",
    "describe",
]


class UpstreamError(Exception):
    """One call to one upstream failed in a way that counts against its breaker."""

    def __init__(self, reason: str, *, processed: bool) -> None:
        super().__init__(reason)
        self.reason = reason
        self.processed = processed
        """False only when the upstream certainly did not act on the request."""


class RejectedError(Exception):
    """The upstream answered, but refused the request itself (a 4xx): passed on, not retried."""

    def __init__(self, status: int, body: Any) -> None:
        super().__init__(f"HTTP {status}")
        self.status = status
        self.body = body
        self.component = ""
        self.region = ""


class ExhaustedError(Exception):
    """Every region of the route was tried or refused by its breaker."""


class NoCredentialsError(Exception):
    """The headers provider failed, so no request could be sent."""


@dataclass(frozen=True)
class Attempt:
    component: str
    region: str
    outcome: str

    def as_json(self) -> dict[str, str]:
        return {"component": self.component, "region": self.region, "outcome": self.outcome}


class BudgetStop(stop_base):
    """Stops retrying when the retry budget has no room, and pays for the retry otherwise."""

    def __init__(self, budget: RetryBudget) -> None:
        self._budget = budget

    def __call__(self, retry_state: RetryCallState) -> bool:
        return not self._budget.try_spend()


def describe(exc: httpx.HTTPError) -> str:
    text = str(exc).strip()
    kind = type(exc).__name__
    return f"{kind}: {text}" if text else kind


class Cursor:
    """Walks a route's regions round and round, skipping those whose breaker refuses a call."""

    def __init__(self, component: str, regions: Sequence[str], router: Router) -> None:
        self._component = component
        self._regions = list(regions)
        self._router = router
        self._position = 0

    def next(self) -> tuple[str, Ticket] | None:
        count = len(self._regions)
        for step in range(count):
            region = self._regions[(self._position + step) % count]
            breaker = self._router.breaker(self._component, region)
            ticket = breaker.acquire() if breaker is not None else None
            if ticket is not None:
                self._position += step + 1
                return region, ticket
        return None
