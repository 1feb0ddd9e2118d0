"""An order-preserving delay line for the relay's `Latency` state (on the plane's loop)."""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable

__all__ = ["DelayLine"]


class DelayLine:
    """Releases chunks to a sink at given times, never out of order (None stands for EOF)."""

    __slots__ = ("_items", "_loop", "_on_idle", "_sink", "_timer")

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        sink: Callable[[bytes | None], None],
        on_idle: Callable[[], None],
    ) -> None:
        self._loop = loop
        self._sink = sink
        self._on_idle = on_idle
        self._items: deque[tuple[float, bytes | None]] = deque()
        self._timer: asyncio.TimerHandle | None = None

    @property
    def busy(self) -> bool:
        return bool(self._items)

    def push(self, data: bytes | None, release_at: float) -> None:
        if self._items:
            release_at = max(release_at, self._items[-1][0])
        elif release_at <= self._loop.time():
            self._sink(data)
            return
        self._items.append((release_at, data))
        if self._timer is None:
            self._timer = self._loop.call_at(self._items[0][0], self._release)

    def flush(self) -> None:
        """Release everything now, in order."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        while self._items:
            self._sink(self._items.popleft()[1])

    def cancel(self) -> None:
        self._items.clear()
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _release(self) -> None:
        self._timer = None
        now = self._loop.time()
        while self._items and self._items[0][0] <= now:
            self._sink(self._items.popleft()[1])
        if self._items:
            self._timer = self._loop.call_at(self._items[0][0], self._release)
        else:
            self._on_idle()
