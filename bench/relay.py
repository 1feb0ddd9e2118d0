"""The fault proxy's own Python per request, without sockets: what each idle fault adds to a hop.

One `ClientSide` of a real `Route` (the fault plane's relay, its fault state and hop recording), its
two transports replaced by ones that only count writes, is fed `bench/proxy.py`'s request and then
its backend's answer, N times in a loop, on no fault and on each idle fault of `bench/proxy.py`
(configured, striking nothing). No socket, no event loop turning, no other process: what is left is
the relay's Python, which `bench/proxy.py`'s CPU per request adds system calls and the loop to.
No fault is the floor, measured again at each round's start; rounds interleaved. Each figure is the
best of its rounds, and each ratio best over best (a round the machine slowed moves neither).

    python bench/relay.py                 # every idle fault, 100,000 pairs, 5 rounds
    python bench/relay.py --pairs 20000 --rounds 3 --only token-rate,stream-cut
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
from collections import deque
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from proxy import REQUEST, RESPONSE, idle_faults

from bascule.targets.local.faultstate import Pass, ProxyFault
from bascule.targets.local.proxy.relay import ClientSide, UpstreamSide
from bascule.targets.local.proxy.route import Route, Upstream


class _Transport:
    """Takes writes and counts them; never full, never closing."""

    def __init__(self) -> None:
        self.writes = 0

    def write(self, data: bytes) -> None:
        self.writes += 1

    def is_closing(self) -> bool:
        return False

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return default

    def pause_reading(self) -> None: ...

    def resume_reading(self) -> None: ...

    def close(self) -> None: ...

    def abort(self) -> None: ...


class _Plane:
    """What a route asks of its plane here: somewhere to record hops."""

    def __init__(self) -> None:
        self.hops: deque[object] = deque(maxlen=10_000)
        self.hops_dropped = 0

    def record_hop(self, hop: object) -> None:
        self.hops.append(hop)

    def spawn(self, coroutine: Any) -> None:
        coroutine.close()  # the upstream is given below, not connected


def per_pair(state: ProxyFault, pairs: int) -> float:
    """Microseconds of the relay's Python per request and its answer under `state`."""
    loop = asyncio.new_event_loop()
    route = Route(_Plane(), loop, name="bench", upstreams=[Upstream("127.0.0.1", 9)], port=0, seed=1)  # type: ignore[arg-type]
    try:
        route.set_fault(state)
        conn = ClientSide(route)
        client, upstream = _Transport(), _Transport()
        conn.connection_made(client)  # type: ignore[arg-type]
        conn.upstream_made(upstream)  # type: ignore[arg-type]
        request, answer = conn.data_received, UpstreamSide(conn).data_received
        for _ in range(2_000):  # warm
            request(REQUEST)
            answer(RESPONSE)
        if not (client.writes and upstream.writes):
            raise SystemExit(f"{type(state).__name__}: nothing relayed")
        started = time.perf_counter()
        for _ in range(pairs):
            request(REQUEST)
            answer(RESPONSE)
        return (time.perf_counter() - started) / pairs * 1e6
    finally:
        route.close()
        loop.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=100_000, help="request/answer pairs a measurement")
    parser.add_argument("--rounds", type=int, default=5, help="rounds, interleaved (best of them)")
    parser.add_argument("--only", default="", help="idle faults to measure, comma-separated (default: all)")
    args = parser.parse_args()
    if not (1_000 <= args.pairs <= 1_000_000 and 1 <= args.rounds <= 20):
        parser.error("--pairs must be within [1000, 1000000] and --rounds within [1, 20]")
    faults: dict[str, object] = idle_faults()
    if args.only:
        wanted = [name.strip() for name in args.only.split(",")]
        unknown = [name for name in wanted if name not in faults]
        if unknown:
            parser.error(f"unknown idle fault(s) {unknown}; known: {', '.join(faults)}")
        faults = {name: faults[name] for name in wanted}
    states: dict[str, ProxyFault] = {"no fault": Pass(), **faults}  # type: ignore[dict-item]
    seen: dict[str, list[float]] = {name: [] for name in states}
    for _ in range(args.rounds):
        for name, state in states.items():
            seen[name].append(per_pair(state, args.pairs))
    floor = min(seen["no fault"])
    print(f"the relay's Python per request and answer, {args.pairs:,} pairs, best of {args.rounds} rounds")
    print(f"{'':20} {'µs / pair':>10} {'÷ no fault':>11}  {'(all rounds, µs)'}")
    for name in states:
        rounds = " ".join(f"{v:.2f}" for v in seen[name])
        print(f"{name:20} {min(seen[name]):10.2f} {min(seen[name]) / floor:11.2f}  ({rounds})")


if __name__ == "__main__":
    main()
