"""`FaultPlane`: the named routes of the fault proxy, sharing one event loop in a thread of their own."""

from __future__ import annotations

import asyncio
import logging
import zlib
from collections import deque
from collections.abc import Coroutine, Mapping, Sequence
from typing import Final

from bascule.journal.hops import RouteHop
from bascule.targets.local.faultstate import Pass, ProxyFault
from bascule.targets.local.proxy.loop import LoopThread
from bascule.targets.local.proxy.route import Route, RouteInfo, RouteStats, Upstream
from bascule.tracecontext import parse_traceparent

__all__ = ["FaultPlane"]

_log = logging.getLogger(__name__)

HOPS_KEPT: Final = 200_000
"""Hops held between two `take_hops` calls; beyond, the oldest are dropped and counted."""

RawHop = tuple[str, str | bytes | None, float, float | None, int | None, bool, bool]
"""A hop as the relay records it (`RouteHop`'s fields, the trace id still the ``traceparent``
header as it came): a tuple, cheap on the hot path; `take_hops` makes it a `RouteHop`."""


class FaultPlane:
    """Named fault-proxy routes sharing one event loop in a thread of their own.

    Every public method is thread-safe and returns once the loop has carried it out; called from
    the plane's own loop (a callback on it), it runs inline.
    """

    def __init__(self, *, record_hops: bool = True) -> None:
        self._thread = LoopThread("bascule-faultplane")
        self._routes: dict[str, Route] = {}
        self._tasks: set[asyncio.Task[object]] = set()
        # Appended on the loop, taken from another thread: deque's append and popleft are atomic.
        self.hops: deque[RawHop] | None = deque() if record_hops else None
        self.hops_dropped = 0

    def __enter__(self) -> FaultPlane:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    @property
    def running(self) -> bool:
        return self._thread.running

    def start(self) -> None:
        """Start the plane's thread and loop."""
        self._thread.start()

    def stop(self) -> None:
        """Close every route and connection, then stop the loop and join its thread."""
        self._thread.stop(self._shutdown)

    def add_route(
        self, name: str, upstream: Upstream | Sequence[Upstream], *, port: int = 0, seed: int | None = None
    ) -> int:
        """Listen on 127.0.0.1:`port` (0: any free port) and relay to `upstream` — or to several,
        one new connection after the other; returns the port. With no upstream, connections are
        accepted and reset, like a load balancer without healthy targets.

        `seed` seeds the route's random draws (jitter, error ratios); it defaults to a hash of
        the name, so that a run is reproducible.
        """
        route_seed = zlib.crc32(name.encode()) if seed is None else seed

        def add() -> int:
            if name in self._routes:
                raise ValueError(f"route {name!r} exists already")
            upstreams = [upstream] if isinstance(upstream, Upstream) else list(upstream)
            route = Route(self, self._thread.loop, name=name, upstreams=upstreams, port=port, seed=route_seed)
            self._routes[name] = route
            return route.port

        return self._thread.call(add)

    def remove_route(self, name: str) -> None:
        """Stop listening and close the route's connections."""

        def remove() -> None:
            self._route(name).close()
            del self._routes[name]

        self._thread.call(remove)

    def set_upstream(self, name: str, host: str, port: int) -> None:
        """Relay the route's new connections to `host:port`; open connections keep theirs."""
        upstream = Upstream(host, port)

        self.set_upstreams(name, [upstream])

    def set_upstreams(self, name: str, upstreams: Sequence[Upstream]) -> None:
        """Spread the route's new connections over `upstreams`; open connections keep theirs."""
        chosen = tuple(upstreams)

        def set_upstreams() -> None:
            self._route(name).upstreams = chosen

        self._thread.call(set_upstreams)

    def set_fault(self, name: str, state: ProxyFault) -> None:
        """Put route `name` in `state`; in force for the next bytes and connections on return."""
        self._thread.call(lambda: self._route(name).set_fault(state))

    def set_faults(self, states: Mapping[str, ProxyFault]) -> None:
        """Put several routes in their states in one step of the loop: no connection sees some of
        them changed and others not. Unknown names raise `KeyError` before anything changes."""
        chosen = dict(states)

        def set_all() -> None:
            routes = [(self._route(name), state) for name, state in chosen.items()]
            for route, state in routes:
                route.set_fault(state)

        self._thread.call(set_all)

    def clear_fault(self, name: str) -> None:
        """Back to `Pass` for every connection of the route."""
        self.set_fault(name, Pass())

    def fault(self, name: str) -> ProxyFault:
        """The route's current state."""
        return self._thread.call(lambda: self._route(name).state)

    def port(self, name: str) -> int:
        """The route's listening port."""
        return self._thread.call(lambda: self._route(name).port)

    def stats(self, name: str) -> RouteStats:
        """The route's counters."""
        return self._thread.call(lambda: self._route(name).stats())

    def routes(self) -> dict[str, RouteInfo]:
        """Every route with its port, upstream, state and counters."""
        return self._thread.call(lambda: {name: r.info() for name, r in self._routes.items()})

    def take_hops(self) -> list[RouteHop]:
        """The HTTP requests relayed (or answered by a fault) since the last call, oldest first."""
        hops = self.hops
        if hops is None:
            return []
        taken: list[RouteHop] = []
        keep, pop, new = taken.append, hops.popleft, tuple.__new__  # per hop: a run's every request
        while True:
            try:
                route, header, started, took, status, relayed, opaque = pop()
            except IndexError:
                return taken
            trace = None if header is None else parse_traceparent(header)
            keep(new(RouteHop, (route, trace, started, took, status, relayed, opaque)))

    # -- internals --

    def record_hop(self, hop: RawHop) -> None:
        """Keep `hop` for `take_hops` (loop thread only)."""
        hops = self.hops
        if hops is None:
            return
        if len(hops) >= HOPS_KEPT:
            hops.popleft()
            self.hops_dropped += 1
        hops.append(hop)

    def spawn(self, coro: Coroutine[object, object, object]) -> asyncio.Task[object]:
        """Run `coro` on the loop as a task that `stop` cancels (loop thread only)."""
        task = self._thread.loop.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)
        return task

    def _task_done(self, task: asyncio.Task[object]) -> None:
        self._tasks.discard(task)
        # A client that resets before its transport is set up fails connect_accepted_socket;
        # that is the client's business, not an error of the plane.
        if not task.cancelled() and task.exception() is not None:
            _log.debug("route task ended with %r", task.exception())

    def _route(self, name: str) -> Route:
        try:
            return self._routes[name]
        except KeyError:
            raise KeyError(f"no route named {name!r}") from None

    async def _shutdown(self) -> None:
        for route in self._routes.values():
            route.close()
        self._routes.clear()
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        # Let the aborted transports deliver connection_lost before the loop stops.
        for _ in range(3):
            await asyncio.sleep(0)
