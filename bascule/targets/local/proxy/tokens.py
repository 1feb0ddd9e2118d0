"""The token-rate fault (`TokenRate`): a route's token budget, the 429 a request gets while it is
spent, and the shaper that adds the budget's ``x-ratelimit-*-tokens`` headers to each answer and
charges it its tokens (its `usage.total_tokens`, else a token a 4 bytes). Everything here runs on
the plane's loop; the budget is pure but for its clock."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Final

from bascule.targets.local.faultstate import TokenRate
from bascule.targets.local.proxy.answers import Client, Shaper
from bascule.targets.local.proxy.framing import RequestHead, render_response
from bascule.targets.local.proxy.responses import ResponseHead
from bascule.targets.local.proxy.scan import TOTAL_TOKENS, answer_tokens

if TYPE_CHECKING:
    from bascule.targets.local.proxy.route import Route

__all__ = ["TokenBudget", "TokenShaper", "token_answer"]

_TAIL: Final = 64
_RATE_HEADERS: Final = frozenset(
    {b"x-ratelimit-limit-tokens", b"x-ratelimit-remaining-tokens", b"x-ratelimit-reset-tokens"}
)
_RATE_LINES: Final = (
    b"x-ratelimit-limit-tokens: %d\r\nx-ratelimit-remaining-tokens: %d\r\nx-ratelimit-reset-tokens: %.3fs\r\n"
)


class TokenBudget:
    """A bucket of `per_minute` tokens refilling continuously; full when made."""

    def __init__(
        self,
        per_minute: int,
        clock: Callable[[], float] = time.monotonic,
        on_spent: Callable[[], None] | None = None,
    ) -> None:
        self.per_minute = per_minute
        self._full = float(per_minute)
        self._rate = per_minute / 60.0
        self._clock = clock
        self._level = self._full
        self._at = clock()
        self._on_spent = on_spent
        """Called when a charge leaves less than a token (what `wait` tells from then on)."""
        self._full_lines = _RATE_LINES % (per_minute, per_minute, 0.0)
        """`header_lines` while the budget is full: a budget seldom drawn on is, at each answer."""

    def level(self) -> float:
        now = self._clock()
        level = self._level + (now - self._at) * self._rate
        if level > self._full:  # noqa: PLR1730 (not min(): this runs at each answer)
            level = self._full
        self._level = level
        self._at = now
        return level

    def spend(self, tokens: int) -> None:
        level = self._level = self.level() - tokens
        if level < 1.0 and self._on_spent is not None:
            self._on_spent()

    def wait(self) -> float:
        """Seconds until at least one token is left (0 when one is)."""
        if self._level >= 1.0:  # only spending lowers it
            return 0.0
        level = self.level()
        return 0.0 if level >= 1.0 else (1.0 - level) / self._rate

    def figures(self) -> tuple[int, int, float]:
        """The limit, the whole tokens left, and the seconds until the budget is full again."""
        level = self.level()
        return self.per_minute, max(0, math.floor(level)), (self._full - level) / self._rate

    def headers(self) -> tuple[tuple[str, str], ...]:
        limit, remaining, full_in = self.figures()
        return (
            ("x-ratelimit-limit-tokens", str(limit)),
            ("x-ratelimit-remaining-tokens", str(remaining)),
            ("x-ratelimit-reset-tokens", f"{full_in:.3f}s"),
        )

    def charge(self, tokens: int) -> bytes:
        """The header lines of an answer charged `tokens` (`header_lines` as the answer found the
        budget), then its charge (`spend`, when `tokens`): what an answer that came whole costs, with
        one reading of the clock."""
        level = self.level()
        lines = (
            self._full_lines
            if level == self._full
            else _RATE_LINES % (self.per_minute, max(0, math.floor(level)), (self._full - level) / self._rate)
        )
        if tokens:
            level = self._level = level - tokens
            if level < 1.0 and self._on_spent is not None:
                self._on_spent()
        return lines

    def header_lines(self) -> bytes:
        """`headers` as the header lines of a head, each ending in CRLF (formatted at once)."""
        return self.charge(0)


def token_answer(state: TokenRate, budget: TokenBudget, head: RequestHead) -> bytes | None:
    """The 429 a request gets while the budget is spent, or None to relay it."""
    wait = budget.wait()
    if wait <= 0.0:
        return None
    return render_response(
        429,
        state.body_bytes,
        headers=(
            ("retry-after", str(max(1, math.ceil(wait)))),
            *budget.headers(),
            ("x-bascule-fault", "token-rate"),
        ),
        keep_alive=head.keep_alive,
        head_only=head.method == "HEAD",
    )


class TokenShaper(Shaper):
    """Adds the budget's headers to each response and charges its tokens at its end."""

    glances = True

    def __init__(self, state: TokenRate, client: Client, route: Route, *, synced: bool) -> None:
        super().__init__(state, client, route, synced=synced)
        self.bytes = 0
        self.usage: int | None = None
        self.tail = b""

    def request(self, head_only: bool) -> None:
        self.synced = True  # `Shaper.request`, at each request: one call less
        self.parser.expect(head_only)

    def glanced(self, data: bytes, end: int) -> bool:
        # The same as the hooks do, in one pass: the head with the budget's lines added (when the
        # upstream sent none of its own, which the hooks drop), then the charge.
        budget = self.route.tokens
        if budget is None or (tokens := answer_tokens(data, end)) < 0:
            return False
        self.client.write_client(b"".join((data[:end], budget.charge(tokens), data[end:])))
        return True

    def on_head(self, head: ResponseHead) -> None:
        budget = self.route.tokens
        add = budget.headers() if budget is not None else ()
        self.emit(head.render(drop=_RATE_HEADERS, add=add))
        self.bytes = 0
        self.usage = None
        self.tail = b""

    def on_body(self, payload: bytes) -> None:
        self.bytes += len(payload)
        seen = self.tail + payload
        for found in TOTAL_TOKENS.finditer(seen):
            self.usage = int(found.group(1))
        self.tail = seen[-_TAIL:]
        super().on_body(payload)

    def on_end(self) -> None:
        budget = self.route.tokens
        if budget is not None and self.head is not None and 200 <= self.head.status < 300:
            budget.spend(self.usage if self.usage is not None else math.ceil(self.bytes / 4))
        super().on_end()
