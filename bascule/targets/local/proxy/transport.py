"""Transport faults on the bytes a hop answers, whatever they carry (toxiproxy's bandwidth,
limit_data, slicer and slow_close): `Bandwidth` paces them, `LimitData` ends the connection after
some of them, `Slicer` cuts them into small delayed pieces, `SlowClose` holds back the upstream's
close. Nothing is parsed; everything here runs on the plane's loop."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Final

from bascule.targets.local.faultstate import Bandwidth, LimitData, Slicer, SlowClose
from bascule.targets.local.proxy.answers import Client, DelayedShaper, Shaper

if TYPE_CHECKING:
    from bascule.targets.local.proxy.route import Route

__all__ = ["BandwidthShaper", "LimitShaper", "RawShaper", "SlicerShaper", "SlowCloseShaper"]

_SOON: Final = 0.001
"""A paced piece due this close to now leaves at once: the event loop's timers are no finer."""


class RawShaper(Shaper):
    """A transport fault on the bytes to the client, whatever they are (no response is parsed)."""

    frames = False

    def request(self, head_only: bool) -> None:
        pass

    def feed(self, data: bytes) -> None:
        if self.done:
            self.route.bytes_dropped += len(data)
        else:
            self.on_raw(data)

    def eof(self) -> None:
        if not self.done:
            self.emit_eof()

    def release(self) -> bool:
        self.flush()
        return True

    def on_raw(self, data: bytes) -> None:
        self.emit(data)


class BandwidthShaper(RawShaper, DelayedShaper):
    """Paces the bytes to the client at `rate` a second, in slices of 1/20 s."""

    def __init__(self, state: Bandwidth, client: Client, route: Route, *, synced: bool) -> None:
        super().__init__(state, client, route, synced=synced)
        self.rate = state.rate
        self.slice = max(1, state.rate // 20)
        self.free_at = 0.0

    def feed(self, data: bytes) -> None:
        size = len(data)
        if size <= self.slice and not self.done and not self.line.busy:  # one piece, none before it
            now = self.route.loop.time()
            self.free_at = max(now, self.free_at) + size / self.rate
            if self.free_at - now <= _SOON:
                self.client.write_client(data)
            else:
                self.line.push(data, self.free_at)
        else:
            super().feed(data)

    def on_raw(self, data: bytes) -> None:
        for start in range(0, len(data), self.slice):
            piece = data[start : start + self.slice]
            self.free_at = max(self.route.loop.time(), self.free_at) + len(piece) / self.rate
            self.line.push(piece, self.free_at)


class LimitShaper(RawShaper):
    """Closes (or resets) the connection once `limit` bytes have gone to its client."""

    def __init__(self, state: LimitData, client: Client, route: Route, *, synced: bool) -> None:
        super().__init__(state, client, route, synced=synced)
        self.limit = state
        self.sent = 0

    def feed(self, data: bytes) -> None:
        if not self.done and self.sent + len(data) < self.limit.limit:  # the limit is not reached
            self.sent += len(data)
            self.client.write_client(data)
        else:
            super().feed(data)

    def on_raw(self, data: bytes) -> None:
        room = self.limit.limit - self.sent
        self.sent += len(data)
        self.emit(data[:room])
        if self.sent >= self.limit.limit:
            self.route.bytes_dropped += max(0, len(data) - room)
            self.route.requests_faulted += 1
            self.done = True
            if self.limit.reset:
                self.client.reset()
            else:
                self.client.close()


class SlicerShaper(RawShaper, DelayedShaper):
    """Cuts the bytes to the client into pieces of `average_size` ± `size_variation` (drawn
    uniformly per piece), each leaving `delay` after the one before."""

    def __init__(self, state: Slicer, client: Client, route: Route, *, synced: bool) -> None:
        super().__init__(state, client, route, synced=synced)
        self.slicer = state
        self.last = -math.inf

    def on_raw(self, data: bytes) -> None:
        low = self.slicer.average_size - self.slicer.size_variation
        high = self.slicer.average_size + self.slicer.size_variation
        start = 0
        while start < len(data):
            size = self.route.rng.randint(low, high)
            self.last = max(self.route.loop.time(), self.last + self.slicer.delay)
            self.line.push(data[start : start + size], self.last)
            start += size


class SlowCloseShaper(RawShaper, DelayedShaper):
    """Passes the bytes at once and the upstream's close `delay` late."""

    def __init__(self, state: SlowClose, client: Client, route: Route, *, synced: bool) -> None:
        super().__init__(state, client, route, synced=synced)
        self.delay = state.delay

    def on_raw(self, data: bytes) -> None:
        self.line.push(data, 0.0)

    def emit_eof(self) -> None:
        self.route.requests_faulted += 1
        self.line.push(None, self.route.loop.time() + self.delay)
