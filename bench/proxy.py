"""Benchmark of the local target's fault proxy: direct vs through one proxy hop, in one run.

Starts a trivial keep-alive HTTP backend and a `FaultPlane` route in front of it, each in a
process of its own, then measures from this process:

- latency: sequential keep-alive requests over one connection (blocking socket), p50/p99, for
  the backend directly and through the proxy; the difference is the latency the hop adds;
- throughput: requests per second over many concurrent keep-alive connections for a bounded
  time, with `wrk` when it is installed (it spends far less CPU per request than Python would,
  leaving the machine to the backend and the proxy; `apt-get install wrk`), else with an asyncio
  load generator;
- the same hop through the smallest possible asyncio relay (no fault state, no statistics), in the
  same run: the floor that any Python proxy starts from on this machine.

Targets (issue 4): added p50 <= 100 µs per hop, >= 30,000 req/s through one proxy.

The fault plane runs on uvloop when it is installed (a dependency of bascule on Linux);
`BASCULE_EVENT_LOOP=asyncio python bench/proxy.py` measures it on asyncio's own loop instead.

    python bench/proxy.py            # table
    python bench/proxy.py --json     # one JSON object
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from typing import Final

REQUEST: Final = b"GET / HTTP/1.1\r\nHost: bench\r\n\r\n"
RESPONSE: Final = (
    b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: 2\r\nconnection: keep-alive\r\n\r\nok"
)
DEADLINE_S: Final = 55.0
TARGET_ADDED_P50_US: Final = 100.0
TARGET_PROXIED_RPS: Final = 30_000.0


# --- the two servers, each run as `python bench/proxy.py --serve-…` in a child process --------


class _Backend(asyncio.Protocol):
    """Answers every request head with a fixed 200, keep-alive (GET only: no bodies)."""

    def __init__(self) -> None:
        self._transport: asyncio.Transport | None = None
        self._tail = b""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self._transport = transport

    def data_received(self, data: bytes) -> None:
        data = self._tail + data
        count = data.count(b"\r\n\r\n")
        self._tail = data[data.rfind(b"\r\n\r\n") + 4 :] if count else data
        if count and self._transport is not None:
            self._transport.write(RESPONSE * count)


def _exit_when_parent_goes() -> None:
    """Children stop when the parent closes their stdin, whatever way it ended."""

    def watch() -> None:
        sys.stdin.buffer.read()
        os._exit(0)

    threading.Thread(target=watch, daemon=True).start()


def serve_backend() -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        server = await loop.create_server(_Backend, "127.0.0.1", 0, backlog=1024)
        print(server.sockets[0].getsockname()[1], flush=True)
        await asyncio.Event().wait()

    _exit_when_parent_goes()
    asyncio.run(main())


def serve_proxy(upstream_port: int) -> None:
    from bascule.targets.local.proxy import FaultPlane, Upstream

    _exit_when_parent_goes()
    plane = FaultPlane()
    plane.start()
    port = plane.add_route("bench", Upstream("127.0.0.1", upstream_port))
    print(port, flush=True)
    threading.Event().wait()


class _RelayUp(asyncio.Protocol):
    def __init__(self, down: asyncio.Transport) -> None:
        self.down = down

    def data_received(self, data: bytes) -> None:
        self.down.write(data)

    def connection_lost(self, exc: Exception | None) -> None:
        self.down.close()


class _RelayDown(asyncio.Protocol):
    """The smallest asyncio relay there is: no fault state, no statistics, no HTTP awareness —
    the floor any Python proxy on this machine starts from."""

    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self.up: asyncio.Transport | None = None
        self.pending: list[bytes] = []

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.down = transport
        asyncio.get_running_loop().create_task(self._connect())

    async def _connect(self) -> None:
        loop = asyncio.get_running_loop()
        up, _ = await loop.create_connection(lambda: _RelayUp(self.down), "127.0.0.1", self.upstream_port)
        self.up = up
        for data in self.pending:
            up.write(data)

    def data_received(self, data: bytes) -> None:
        if self.up is None:
            self.pending.append(data)
        else:
            self.up.write(data)

    def connection_lost(self, exc: Exception | None) -> None:
        if self.up is not None:
            self.up.close()


def serve_relay(upstream_port: int) -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        server = await loop.create_server(lambda: _RelayDown(upstream_port), "127.0.0.1", 0, backlog=1024)
        print(server.sockets[0].getsockname()[1], flush=True)
        await asyncio.Event().wait()

    _exit_when_parent_goes()
    asyncio.run(main())


@contextlib.contextmanager
def child(*args: str) -> Iterator[int]:
    """Run this script with `args` in a child process; yields the port it prints."""
    proc = subprocess.Popen(
        [sys.executable, os.path.abspath(__file__), *args],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        if not line.strip().isdigit():
            raise RuntimeError(f"child {args} did not start (printed {line!r})")
        yield int(line)
    finally:
        if proc.stdin is not None:
            proc.stdin.close()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)


# --- measurements -------------------------------------------------------------------------------


def _connect(port: int) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=5)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def _timed_requests(sock: socket.socket, count: int, samples: list[float] | None) -> None:
    size = len(RESPONSE)
    clock = time.perf_counter
    for _ in range(count):
        start = clock()
        sock.sendall(REQUEST)
        got = 0
        while got < size:
            chunk = sock.recv(65536)
            if not chunk:
                raise RuntimeError("server closed the connection")
            got += len(chunk)
        if samples is not None:
            samples.append(clock() - start)


def measure_latency(ports: list[int], requests: int, warmup: int, blocks: int = 20) -> list[list[float]]:
    """Seconds per request, sequential over one keep-alive connection to each port.

    Requests to the ports alternate in blocks, so that drift of the machine (frequency,
    neighbours) weighs on every series alike.
    """
    series: list[list[float]] = [[] for _ in ports]
    with contextlib.ExitStack() as stack:
        socks = [stack.enter_context(contextlib.closing(_connect(port))) for port in ports]
        for sock in socks:
            _timed_requests(sock, warmup, None)
        per_block, extra = divmod(requests, blocks)
        for block in range(blocks):
            count = per_block + (1 if block < extra else 0)
            for sock, samples in zip(socks, series, strict=True):
                _timed_requests(sock, count, samples)
    return series


def percentile(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def throughput_wrk(wrk: str, port: int, connections: int, seconds: float) -> float:
    result = subprocess.run(
        [wrk, "-t1", f"-c{connections}", f"-d{seconds:g}s", f"http://127.0.0.1:{port}/"],
        capture_output=True,
        text=True,
        timeout=seconds + 15,
        check=True,
    )
    match = re.search(r"Requests/sec:\s+([\d.]+)", result.stdout)
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)|Socket errors: .*", result.stdout)
    if match is None or errors is not None:
        raise RuntimeError(f"wrk failed or saw errors:\n{result.stdout}")
    return float(match.group(1))


class _LoadConnection(asyncio.Protocol):
    """Sends the next request as soon as the previous response is complete."""

    def __init__(self, counter: list[int], stop_at: float) -> None:
        self._counter = counter
        self._stop_at = stop_at
        self._got = 0
        self._transport: asyncio.Transport | None = None
        self.done: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self._transport = transport
        transport.write(REQUEST)

    def data_received(self, data: bytes) -> None:
        assert self._transport is not None
        self._got += len(data)
        size = len(RESPONSE)
        while self._got >= size:
            self._got -= size
            self._counter[0] += 1
            if time.monotonic() >= self._stop_at:
                self._transport.close()
                return
            self._transport.write(REQUEST)

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.done.done():
            self.done.set_result(None)


def throughput_asyncio(port: int, connections: int, seconds: float) -> float:
    async def run() -> float:
        loop = asyncio.get_running_loop()
        counter = [0]
        start = time.monotonic()
        stop_at = start + seconds
        protocols = []
        for _ in range(connections):
            _, proto = await loop.create_connection(
                lambda: _LoadConnection(counter, stop_at), "127.0.0.1", port
            )
            protocols.append(proto)
        await asyncio.wait_for(asyncio.gather(*(p.done for p in protocols)), timeout=seconds + 10)
        return counter[0] / (time.monotonic() - start)

    return asyncio.run(run())


def _event_loop_name() -> str:
    from bascule.targets.local.proxy import new_event_loop

    loop = new_event_loop()
    try:
        return "uvloop" if type(loop).__module__.startswith("uvloop") else "asyncio"
    finally:
        loop.close()


def run_benchmark(args: argparse.Namespace) -> dict[str, object]:
    wrk = None if args.no_wrk else shutil.which("wrk")
    # Other work on the machine skews every figure here; the load average says how much.
    load_at_start = os.getloadavg()[0]
    started = time.monotonic()
    with (
        child("--serve-backend") as backend_port,
        child("--serve-proxy", str(backend_port)) as proxy_port,
        child("--serve-relay", str(backend_port)) as relay_port,
    ):
        direct, proxied, relayed = measure_latency(
            [backend_port, proxy_port, relay_port], args.requests, args.warmup
        )

        def rate(port: int) -> float:
            if wrk is not None:
                return throughput_wrk(wrk, port, args.connections, args.seconds)
            return throughput_asyncio(port, args.connections, args.seconds)

        direct_rps = rate(backend_port)
        proxied_rps = rate(proxy_port)
        relayed_rps = rate(relay_port)
    p50_d, p99_d = percentile(direct, 0.5), percentile(direct, 0.99)
    p50_p, p99_p = percentile(proxied, 0.5), percentile(proxied, 0.99)
    added_p50_us = (p50_p - p50_d) * 1e6
    return {
        "cpus": os.cpu_count(),
        "event_loop": _event_loop_name(),
        "load_average_1m_at_start": load_at_start,
        "load_generator": "wrk -t1" if wrk is not None else "asyncio",
        "requests": args.requests,
        "connections": args.connections,
        "seconds": args.seconds,
        "latency_us": {
            "direct": {"p50": p50_d * 1e6, "p99": p99_d * 1e6, "mean": statistics.fmean(direct) * 1e6},
            "proxied": {
                "p50": p50_p * 1e6,
                "p99": p99_p * 1e6,
                "mean": statistics.fmean(proxied) * 1e6,
            },
            "added_p50": added_p50_us,
            "added_p99": (p99_p - p99_d) * 1e6,
            # The same hop through the smallest possible asyncio relay: what Python alone costs here.
            "minimal_relay": {
                "p50": percentile(relayed, 0.5) * 1e6,
                "p99": percentile(relayed, 0.99) * 1e6,
                "added_p50": (percentile(relayed, 0.5) - p50_d) * 1e6,
            },
        },
        "throughput_rps": {
            "direct": direct_rps,
            "proxied": proxied_rps,
            "ratio": proxied_rps / direct_rps,
            "minimal_relay": relayed_rps,
        },
        "targets": {
            "added_p50_us_max": TARGET_ADDED_P50_US,
            "proxied_rps_min": TARGET_PROXIED_RPS,
            "added_p50_met": added_p50_us <= TARGET_ADDED_P50_US,
            "proxied_rps_met": proxied_rps >= TARGET_PROXIED_RPS,
        },
        "elapsed_s": time.monotonic() - started,
    }


def render_table(result: dict[str, object]) -> str:
    lat = result["latency_us"]
    thr = result["throughput_rps"]
    assert isinstance(lat, dict) and isinstance(thr, dict)
    d, p, r = lat["direct"], lat["proxied"], lat["minimal_relay"]
    rows = [
        f"fault proxy benchmark ({result['event_loop']} loop) — {result['cpus']} CPUs (load average "
        f"{result['load_average_1m_at_start']:.2f} at start), load: {result['load_generator']}, "
        f"{result['requests']} sequential requests, {result['connections']} connections "
        f"× {result['seconds']:g} s",
        f"{'':26}{'direct':>12}{'proxied':>12}{'added/ratio':>14}",
        f"{'latency p50 (µs)':26}{d['p50']:12.1f}{p['p50']:12.1f}{lat['added_p50']:+14.1f}",
        f"{'latency p99 (µs)':26}{d['p99']:12.1f}{p['p99']:12.1f}{lat['added_p99']:+14.1f}",
        f"{'throughput (req/s)':26}{thr['direct']:12.0f}{thr['proxied']:12.0f}{thr['ratio']:14.2f}",
        f"the smallest asyncio relay, for comparison: p50 {r['p50']:.1f} µs ({r['added_p50']:+.1f}), "
        f"p99 {r['p99']:.1f} µs, {thr['minimal_relay']:.0f} req/s",
        f"targets: added p50 <= {TARGET_ADDED_P50_US:g} µs "
        f"({'met' if lat['added_p50'] <= TARGET_ADDED_P50_US else 'MISSED'}), "
        f"proxied >= {TARGET_PROXIED_RPS:,.0f} req/s "
        f"({'met' if thr['proxied'] >= TARGET_PROXIED_RPS else 'MISSED'}); "
        f"ran {result['elapsed_s']:.1f} s",
    ]
    return "\n".join(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--requests", type=int, default=5000, help="sequential requests")
    parser.add_argument("--warmup", type=int, default=500, help="requests not measured")
    parser.add_argument("--connections", type=int, default=64, help="concurrent connections")
    parser.add_argument("--seconds", type=float, default=5.0, help="throughput run length")
    parser.add_argument("--no-wrk", action="store_true", help="use the asyncio load generator")
    parser.add_argument("--serve-backend", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--serve-proxy", type=int, metavar="PORT", help=argparse.SUPPRESS)
    parser.add_argument("--serve-relay", type=int, metavar="PORT", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_backend:
        serve_backend()
        return
    if args.serve_proxy is not None:
        serve_proxy(args.serve_proxy)
        return
    if args.serve_relay is not None:
        serve_relay(args.serve_relay)
        return
    if not (1 <= args.seconds <= 20 and 1 <= args.requests <= 100_000):
        parser.error("--seconds must be within [1, 20] and --requests within [1, 100000]")
    signal.signal(signal.SIGALRM, lambda *_: sys.exit("benchmark exceeded its time bound"))
    signal.alarm(int(DEADLINE_S))
    result = run_benchmark(args)
    signal.alarm(0)
    print(json.dumps(result, indent=2) if args.json else render_table(result))


if __name__ == "__main__":
    main()
