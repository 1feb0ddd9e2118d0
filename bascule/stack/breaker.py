"""Circuit breakers and retry budgets for the reference gateway: pure state machines on an injected clock.

A `CircuitBreaker` guards one upstream (a component in a region)::

    CLOSED ──(failure_threshold failures within window)──> OPEN
    OPEN ──(open_for elapsed)──> HALF_OPEN        admits half_open_probes trial calls
    HALF_OPEN ──(a trial call succeeds)──> CLOSED
    HALF_OPEN ──(a trial call fails)──> OPEN

Every admitted call holds a `Ticket` naming the breaker's epoch, which changes at each
transition; the outcome of a call admitted before the last transition is ignored, so a burst of
late failures cannot re-open a breaker that a probe has just closed. A call that ends with no
verdict (cancelled, e.g. the losing leg of a hedge) gives its ticket back with `release`.

A `RetryBudget` admits a retry only while retries over a sliding window stay within a fraction
of the requests in that window, so retries cannot multiply an overload.

Nothing here sleeps, spawns or does I/O; both classes read time only through ``clock``.
"""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum

from bascule.model.design import CircuitBreaker as CircuitBreakerPolicy

__all__ = [
    "BreakerSnapshot",
    "BreakerState",
    "BudgetUsage",
    "CircuitBreaker",
    "RetryBudget",
    "Ticket",
]

# Float products such as 0.29 * 100 land a hair below the integer they stand for.
_EPSILON = 1e-9


class BreakerState(StrEnum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half-open"


@dataclass(frozen=True)
class Ticket:
    """Permission for one call; hand it back with `succeed`, `fail` or `release`."""

    epoch: int
    probe: bool
    """A half-open trial call, whose outcome decides the breaker's next state."""


@dataclass(frozen=True)
class BreakerSnapshot:
    """A breaker as the status page shows it; durations are seconds before ``now``."""

    state: BreakerState
    failures: int
    """Failures counted in the current window (closed state only)."""
    trips: int
    """How many times the breaker has opened since it was created."""
    open_remaining: float | None
    """Seconds until an open breaker turns half-open; None unless open."""
    healthy_for: float | None
    """Seconds since the breaker last closed after a trip; None unless closed, ``inf`` if it
    never tripped."""


class CircuitBreaker:
    """One upstream's breaker; see the module docstring for the state machine."""

    def __init__(
        self,
        failure_threshold: int = 5,
        window: float = 10.0,
        open_for: float = 5.0,
        half_open_probes: int = 1,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if failure_threshold < 1:
            raise ValueError(f"failure_threshold must be >= 1, got {failure_threshold}")
        if half_open_probes < 1:
            raise ValueError(f"half_open_probes must be >= 1, got {half_open_probes}")
        if window < 0 or open_for < 0:
            raise ValueError("window and open_for are durations >= 0")
        self._threshold = failure_threshold
        self._window = window
        self._open_for = open_for
        self._probe_limit = half_open_probes
        self._clock = clock
        self._state = BreakerState.CLOSED
        self._epoch = 0
        self._failures: deque[float] = deque()
        self._opened_at = 0.0
        self._probes_out = 0
        self._closed_at = -math.inf
        self._trips = 0

    @classmethod
    def from_policy(
        cls, policy: CircuitBreakerPolicy, *, clock: Callable[[], float] = time.monotonic
    ) -> CircuitBreaker:
        """A breaker configured by a design's ``routing.circuit_breaker``."""
        return cls(
            policy.failure_threshold,
            policy.window,
            policy.open_for,
            policy.half_open_probes,
            clock=clock,
        )

    # -- reading -------------------------------------------------------------------------------

    @property
    def state(self) -> BreakerState:
        self._advance(self._clock())
        return self._state

    @property
    def healthy_since(self) -> float | None:
        """When the breaker last closed after a trip (``-inf`` if it never tripped); None
        while it is open or half-open."""
        self._advance(self._clock())
        return self._closed_at if self._state is BreakerState.CLOSED else None

    def snapshot(self) -> BreakerSnapshot:
        now = self._clock()
        self._advance(now)
        self._expire(now)
        closed = self._state is BreakerState.CLOSED
        opened = self._state is BreakerState.OPEN
        return BreakerSnapshot(
            state=self._state,
            failures=len(self._failures) if closed else 0,
            trips=self._trips,
            open_remaining=max(0.0, self._opened_at + self._open_for - now) if opened else None,
            healthy_for=(now - self._closed_at) if closed else None,
        )

    # -- calls ---------------------------------------------------------------------------------

    def acquire(self) -> Ticket | None:
        """A ticket for one call, or None when the breaker refuses it."""
        self._advance(self._clock())
        if self._state is BreakerState.CLOSED:
            return Ticket(self._epoch, probe=False)
        if self._state is BreakerState.HALF_OPEN and self._probes_out < self._probe_limit:
            self._probes_out += 1
            return Ticket(self._epoch, probe=True)
        return None

    def succeed(self, ticket: Ticket) -> None:
        now = self._clock()
        self._advance(now)
        if ticket.epoch != self._epoch:
            return
        if self._state is BreakerState.HALF_OPEN and ticket.probe:
            self._state = BreakerState.CLOSED
            self._epoch += 1
            self._failures.clear()
            self._closed_at = now

    def fail(self, ticket: Ticket) -> None:
        now = self._clock()
        self._advance(now)
        if ticket.epoch != self._epoch:
            return
        if self._state is BreakerState.CLOSED:
            self._expire(now)
            self._failures.append(now)
            if len(self._failures) >= self._threshold:
                self._open(now)
        elif self._state is BreakerState.HALF_OPEN and ticket.probe:
            self._open(now)

    def release(self, ticket: Ticket) -> None:
        """Give back a ticket whose call ended without a verdict."""
        self._advance(self._clock())
        if ticket.epoch == self._epoch and ticket.probe and self._state is BreakerState.HALF_OPEN:
            self._probes_out -= 1

    # -- transitions ---------------------------------------------------------------------------

    def _open(self, now: float) -> None:
        self._state = BreakerState.OPEN
        self._epoch += 1
        self._opened_at = now
        self._failures.clear()
        self._trips += 1

    def _advance(self, now: float) -> None:
        if self._state is BreakerState.OPEN and now - self._opened_at >= self._open_for:
            self._state = BreakerState.HALF_OPEN
            self._epoch += 1
            self._probes_out = 0

    def _expire(self, now: float) -> None:
        while self._failures and now - self._failures[0] >= self._window:
            self._failures.popleft()


@dataclass(frozen=True)
class BudgetUsage:
    budget: float
    window: float
    requests: int
    retries: int

    @property
    def ratio(self) -> float:
        """Retries per request over the window (0 without requests)."""
        return self.retries / self.requests if self.requests else 0.0


class RetryBudget:
    """Retries allowed while the retries of the last ``window`` seconds stay within ``budget`` of
    its requests, plus a floor of ``min_per_second`` retries per second (Finagle's RetryBudget):
    the ratio keeps retries from multiplying an overload, the floor keeps a quiet service able to
    retry at all. A budget and a floor of 0 never retry."""

    def __init__(
        self,
        budget: float,
        window: float = 10.0,
        *,
        min_per_second: float = 0.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not 0 <= budget <= 1:
            raise ValueError(f"budget is a fraction of requests in [0, 1], got {budget}")
        if window <= 0:
            raise ValueError(f"window must be > 0, got {window}")
        if min_per_second < 0:
            raise ValueError(f"min_per_second must be >= 0, got {min_per_second}")
        self._floor = min_per_second * window
        self._budget = budget
        self._window = window
        self._clock = clock
        self._requests: deque[float] = deque()
        self._retries: deque[float] = deque()

    def record_request(self) -> None:
        """Count a first attempt."""
        now = self._clock()
        self._expire(now)
        self._requests.append(now)

    def allows(self) -> bool:
        """Whether one more retry fits in the budget now (changes nothing)."""
        self._expire(self._clock())
        return len(self._retries) + 1 <= self._floor + self._budget * len(self._requests) + _EPSILON

    def spend(self) -> None:
        """Count a retry, whether or not the budget allowed it."""
        now = self._clock()
        self._expire(now)
        self._retries.append(now)

    def try_spend(self) -> bool:
        """Count a retry if the budget allows it; tell whether it did."""
        if not self.allows():
            return False
        self.spend()
        return True

    def usage(self) -> BudgetUsage:
        self._expire(self._clock())
        return BudgetUsage(self._budget, self._window, len(self._requests), len(self._retries))

    def _expire(self, now: float) -> None:
        for stamps in (self._requests, self._retries):
            while stamps and now - stamps[0] >= self._window:
                stamps.popleft()
