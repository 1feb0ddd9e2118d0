"""Transport faults on the bytes a hop answers, whatever they carry (toxiproxy's bandwidth and
limit_data): `Bandwidth` paces them, `LimitData` ends the connection after some of them. Nothing is
parsed; everything here runs on the plane's loop."""

from __future__ import annotations

from typing import TYPE_CHECKING

from bascule.targets.local.faultstate import Bandwidth, LimitData
from bascule.targets.local.proxy.answers import Client, DelayedShaper, Shaper

if TYPE_CHECKING:
    from bascule.targets.local.proxy.route import Route

__all__ = ["BandwidthShaper", "LimitShaper", "RawShaper"]


class RawShaper(Shaper):
    """A transport fault on the bytes to the client, whatever they are (no response is parsed)."""

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
