"""Benchmark of the local target's fault proxy: direct vs through one proxy hop, in one run.

Starts a trivial keep-alive HTTP backend and, in front of it, each in a process of its own: a
`FaultPlane` with one route without a fault and one route per idle fault (a fault of each kind
that relays traffic, configured but striking nothing: ``ratio 0``, ``delay 0``, a rate no test
reaches); haproxy (Debian's, one thread, TCP mode) when it is installed; and the smallest possible
asyncio relay (no fault state, no statistics), on the fault plane's own event loop. Then it
measures from this process:

- latency: sequential keep-alive requests over one connection per hop (blocking socket), p50/p99,
  the hops interleaved in blocks; the difference to the backend's own is what the hop adds;
- throughput: requests per second over many concurrent keep-alive connections for a bounded time,
  with `wrk` when it is installed (it spends far less CPU per request than Python would; `apt-get
  install wrk haproxy`), else with an asyncio load generator; the backend alone before and after
  every hop, each hop's rate divided by the mean of the two around it. With ``--rounds N`` the
  whole cycle of hops runs N times: each hop's ratio is the median of its N, and its ratio to
  haproxy's the median of the N taken round by round (a busy machine moves one round's figures
  by a factor of two; the median of five is what to read there);
- CPU per request: the CPU time (user and system, every thread) each hop's own process spent
  during its throughput runs, divided by the requests it relayed, and its ratio to haproxy's of
  the same round. On two cores the hop is the bottleneck, one core saturated: its throughput is
  about the inverse of this, and this is the figure the neighbours move least.

On two cores the proxy, the backend and the load generator share the CPUs: a hop's throughput
ratio is bounded by that sharing, and haproxy's ratio, measured in the same run, is the floor
bascule's is compared with. Goals (issue 18): bascule's ratio >= 0.9 × haproxy's, added
p50 <= 100 µs and p99 <= 150 µs, with no fault and with each idle fault.

The fault plane runs on uvloop when it is installed (a dependency of bascule on Linux);
`BASCULE_EVENT_LOOP=asyncio python bench/proxy.py` measures it on asyncio's own loop instead.

    python bench/proxy.py            # table
    python bench/proxy.py --json     # one JSON object
    python bench/proxy.py --no-idle  # no fault and the floors only
    python bench/proxy.py --rounds 5 # throughput five times over, medians
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
import tempfile
import threading
import time
from collections.abc import Iterator
from typing import Any, Final, cast

REQUEST: Final = b"GET / HTTP/1.1\r\nHost: bench\r\n\r\n"
RESPONSE: Final = (
    b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: 2\r\nconnection: keep-alive\r\n\r\nok"
)
TARGET_ADDED_P50_US: Final = 100.0
TARGET_ADDED_P99_US: Final = 150.0
TARGET_VS_HAPROXY: Final = 0.9
"""bascule's proxied/direct throughput ratio, as a share of haproxy's (issue 18)."""


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


def idle_faults() -> dict[str, object]:
    """A fault of each kind that relays traffic, configured on a route but striking nothing: what
    the relay's fault machinery costs while no fault is in force. ``blackhole`` and ``hang`` have no
    idle form (they relay nothing) and are left out."""
    from bascule.targets.local import faultstate as f

    big = 10**15
    return {
        "latency": f.Latency(fixed=0.0),
        "http-error": f.HttpError(ratio=0.0),
        "throttle": f.Throttle(ratio=0.0),
        "refuse (counted)": f.Refuse(every=big),
        "ttft": f.Ttft(delay=0.0),
        "stream-cut": f.StreamCut(after_events=big),
        "token-rate": f.TokenRate(tokens_per_minute=big),
        "degrade": f.Degrade(ratio=0.0),
        "bandwidth": f.Bandwidth(rate=big),
        "limit-data": f.LimitData(limit=big),
    }


def serve_proxy(upstream_port: int) -> None:
    """One route without a fault, and one per idle fault; prints their ports as one JSON object."""
    from bascule.targets.local.faultstate import ProxyFault
    from bascule.targets.local.proxy import FaultPlane, Upstream

    _exit_when_parent_goes()
    plane = FaultPlane()
    plane.start()
    ports = {"none": plane.add_route("bench", Upstream("127.0.0.1", upstream_port))}
    for number, (kind, state) in enumerate(idle_faults().items()):
        name = f"idle-{number}"
        ports[kind] = plane.add_route(name, Upstream("127.0.0.1", upstream_port))
        assert isinstance(state, ProxyFault)
        plane.set_fault(name, state)
    print(json.dumps(ports), flush=True)
    # The hops the relay records are taken as a run's traffic pump takes them, every tick: their
    # cost is part of the hop's, as in a run.
    while True:
        plane.take_hops()
        time.sleep(0.1)  # bascule.runner.traffic.TICK


_HAPROXY_CONFIG: Final = """global
    nbthread 1
    maxconn 4096
defaults
    mode tcp
    timeout connect 5s
    timeout client 30s
    timeout server 30s
frontend bench
    bind 127.0.0.1:{port}
    default_backend backend
backend backend
    server backend 127.0.0.1:{upstream}
"""


@contextlib.contextmanager
def haproxy(binary: str, upstream_port: int) -> Iterator[tuple[int, int]]:
    """haproxy (one thread, TCP mode, as the issue measured it) in front of the backend: the floor a
    proxy written in C reaches on this machine, in the same run. Yields its port and its pid."""
    with socket.socket() as probe:  # a free port: haproxy cannot print the one it was given
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with tempfile.TemporaryDirectory(prefix="bascule-bench-haproxy-") as tmp:
        config = os.path.join(tmp, "haproxy.cfg")
        with open(config, "w", encoding="utf-8") as handle:
            handle.write(_HAPROXY_CONFIG.format(port=port, upstream=upstream_port))
        proc = subprocess.Popen([binary, "-db", "-f", config], stdout=subprocess.DEVNULL)
        try:
            deadline = time.monotonic() + 10.0
            while True:
                try:
                    socket.create_connection(("127.0.0.1", port), timeout=1).close()
                    break
                except OSError:
                    if proc.poll() is not None or time.monotonic() > deadline:
                        raise RuntimeError("haproxy did not start") from None
                    time.sleep(0.1)  # bascule.runner.traffic.TICK
            yield port, proc.pid
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=5)


class _RelayUp(asyncio.Protocol):
    def __init__(self, down: asyncio.Transport) -> None:
        self.down = down

    def data_received(self, data: bytes) -> None:
        self.down.write(data)

    def connection_lost(self, exc: Exception | None) -> None:
        self.down.close()


class _RelayDown(asyncio.Protocol):
    """The smallest asyncio relay there is: no fault state, no statistics, no HTTP awareness —
    the floor any Python proxy on this machine starts from. It runs on the event loop the fault
    plane runs on (uvloop where installed), so that it differs from bascule's hop by bascule's own
    work only."""

    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self.up: asyncio.Transport | None = None
        self.pending: list[bytes] = []

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.down = cast(asyncio.Transport, transport)  # uvloop's are not asyncio.Transport subclasses
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

    from bascule.targets.local.proxy import new_event_loop

    _exit_when_parent_goes()
    loop = new_event_loop()
    loop.run_until_complete(main())


@contextlib.contextmanager
def child(*args: str) -> Iterator[tuple[int, int]]:
    """Run this script with `args` in a child process; yields the port it prints and its pid."""
    with child_line(*args) as (line, pid):
        if not line.strip().isdigit():
            raise RuntimeError(f"child {args} did not start (printed {line!r})")
        yield int(line), pid


@contextlib.contextmanager
def child_line(*args: str) -> Iterator[tuple[str, int]]:
    """Run this script with `args` in a child process; yields the first line it prints and its pid."""
    proc = subprocess.Popen(
        [sys.executable, os.path.abspath(__file__), *args],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        yield proc.stdout.readline(), proc.pid
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


def cpu_seconds(pid: int) -> float | None:
    """CPU time (user + system, every thread) a process has used so far; None where /proc is not."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as handle:
            fields = handle.read().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def throughput_wrk(wrk: str, port: int, connections: int, seconds: float) -> tuple[float, int]:
    """Requests a second, and requests answered, from wrk."""
    result = subprocess.run(
        [wrk, "-t1", f"-c{connections}", f"-d{seconds:g}s", f"http://127.0.0.1:{port}/"],
        capture_output=True,
        text=True,
        timeout=seconds + 15,
        check=True,
    )
    match = re.search(r"Requests/sec:\s+([\d.]+)", result.stdout)
    count = re.search(r"(\d+) requests in", result.stdout)
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)|Socket errors: .*", result.stdout)
    if match is None or count is None or errors is not None:
        raise RuntimeError(f"wrk failed or saw errors:\n{result.stdout}")
    return float(match.group(1)), int(count.group(1))


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


def throughput_asyncio(port: int, connections: int, seconds: float) -> tuple[float, int]:
    async def run() -> tuple[float, int]:
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
        return counter[0] / (time.monotonic() - start), counter[0]

    return asyncio.run(run())


def _event_loop_name() -> str:
    from bascule.targets.local.proxy import new_event_loop

    loop = new_event_loop()
    try:
        return "uvloop" if type(loop).__module__.startswith("uvloop") else "asyncio"
    finally:
        loop.close()


def _latency(samples: list[float], direct: list[float]) -> dict[str, float]:
    p50, p99 = percentile(samples, 0.5), percentile(samples, 0.99)
    return {
        "p50": p50 * 1e6,
        "p99": p99 * 1e6,
        "mean": statistics.fmean(samples) * 1e6,
        "added_p50": (p50 - percentile(direct, 0.5)) * 1e6,
        "added_p99": (p99 - percentile(direct, 0.99)) * 1e6,
    }


def run_benchmark(args: argparse.Namespace) -> dict[str, object]:
    wrk = None if args.no_wrk else shutil.which("wrk")
    haproxy_binary = None if args.no_haproxy else shutil.which("haproxy")
    # Other work on the machine skews every figure here; the load average says how much.
    load_at_start = os.getloadavg()[0]
    started = time.monotonic()
    with contextlib.ExitStack() as stack:
        backend_port, _ = stack.enter_context(child("--serve-backend"))
        line, proxy_pid = stack.enter_context(child_line("--serve-proxy", str(backend_port)))
        routes: dict[str, int] = json.loads(line)
        relay_port, relay_pid = stack.enter_context(child("--serve-relay", str(backend_port)))
        hops = {"bascule": routes.pop("none"), "minimal_relay": relay_port}
        pids = {"bascule": proxy_pid, "minimal_relay": relay_pid}
        if haproxy_binary is not None:
            hops["haproxy"], pids["haproxy"] = stack.enter_context(haproxy(haproxy_binary, backend_port))
        idle = routes if args.idle else {}
        pids |= {f"idle {kind}": proxy_pid for kind in idle}  # one route at a time is loaded
        names = ["direct", *hops, *(f"idle {kind}" for kind in idle)]
        ports = [backend_port, *hops.values(), *idle.values()]
        series = dict(zip(names, measure_latency(ports, args.requests, args.warmup), strict=True))

        def rate(port: int, seconds: float) -> tuple[float, int]:
            if wrk is not None:
                return throughput_wrk(wrk, port, args.connections, seconds)
            return throughput_asyncio(port, args.connections, seconds)

        # The CPU time the hop's own process spent per request it relayed: on two cores the hop is
        # the bottleneck (one core, saturated), so its throughput is about the inverse of this —
        # the figure the neighbours move least.
        cpu: dict[str, list[float]] = {name: [] for name in pids}

        def measured(name: str, port: int, seconds: float) -> float:
            before = cpu_seconds(pids[name])
            per_second, count = rate(port, seconds)
            after = cpu_seconds(pids[name])
            if before is not None and after is not None and count:
                cpu[name].append((after - before) / count * 1e6)
            return per_second

        # The backend alone before and after every hop: each hop's rate is divided by the mean of
        # the two around it, so that the neighbours' load, which changes by the second on a shared
        # machine, weighs on both sides of each ratio alike.
        timed = [*((n, p, args.seconds) for n, p in hops.items())]
        timed += [(f"idle {kind}", port, args.idle_seconds) for kind, port in idle.items()]
        runs: dict[str, list[float]] = {name: [] for name, _, _ in timed}
        rounds: dict[str, list[float]] = {name: [] for name, _, _ in timed}
        directs = [rate(backend_port, args.seconds)[0]]
        for _ in range(args.rounds):
            for name, port, seconds in timed:
                runs[name].append(measured(name, port, seconds))
                directs.append(rate(backend_port, seconds)[0])
                rounds[name].append(runs[name][-1] / ((directs[-2] + directs[-1]) / 2))
    rates = {name: statistics.median(values) for name, values in runs.items()}
    rates["direct"] = statistics.fmean(directs)
    ratio = {"direct": 1.0} | {name: statistics.median(values) for name, values in rounds.items()}
    floors = rounds.get("haproxy")
    # Each hop's ratio to haproxy's of the same round (the two measured minutes apart at most).
    vs_haproxy = (
        {}
        if floors is None
        else {
            name: statistics.median(r / f for r, f in zip(values, floors, strict=True))
            for name, values in rounds.items()
            if name != "haproxy"
        }
    )
    cpu_us = {name: statistics.median(values) for name, values in cpu.items() if values}
    floor_cpu = cpu.get("haproxy") or []
    # Each hop's CPU per request to haproxy's of the same round.
    cpu_vs_haproxy = {
        name: statistics.median(v / f for v, f in zip(values, floor_cpu, strict=True))
        for name, values in cpu.items()
        if name != "haproxy" and floor_cpu and len(values) == len(floor_cpu)
    }
    direct = series["direct"]
    latency = {name: _latency(samples, direct) for name, samples in series.items()}
    met = {
        name: {
            "added_p50": latency[name]["added_p50"] <= TARGET_ADDED_P50_US,
            "added_p99": latency[name]["added_p99"] <= TARGET_ADDED_P99_US,
            "ratio_vs_haproxy": None if not vs_haproxy else vs_haproxy[name] >= TARGET_VS_HAPROXY,
        }
        for name in latency
        if name == "bascule" or name.startswith("idle ")
    }
    return {
        "cpus": os.cpu_count(),
        "event_loop": _event_loop_name(),
        "load_average_1m_at_start": load_at_start,
        "load_generator": "wrk -t1" if wrk is not None else "asyncio",
        "requests": args.requests,
        "connections": args.connections,
        "seconds": args.seconds,
        "idle_seconds": args.idle_seconds,
        "rounds": args.rounds,
        "latency_us": latency,
        "throughput_rps": rates,
        "direct_rps_runs": directs,
        "ratio_to_direct": ratio,
        "ratio_to_direct_rounds": rounds,
        "ratio_vs_haproxy": vs_haproxy,
        "bascule_ratio_vs_haproxy": vs_haproxy.get("bascule"),
        "cpu_us_per_request": cpu_us,
        "cpu_vs_haproxy": cpu_vs_haproxy,
        "targets": {
            "added_p50_us_max": TARGET_ADDED_P50_US,
            "added_p99_us_max": TARGET_ADDED_P99_US,
            "ratio_vs_haproxy_min": TARGET_VS_HAPROXY,
            "met": met,
        },
        "elapsed_s": time.monotonic() - started,
    }


def _verdict(ok: bool | None) -> str:
    return "unmeasured (no haproxy)" if ok is None else ("met" if ok else "MISSED")


def render_table(result: dict[str, Any]) -> str:
    lat, thr, ratio = result["latency_us"], result["throughput_rps"], result["ratio_to_direct"]
    rows = [
        f"fault proxy benchmark ({result['event_loop']} loop) — {result['cpus']} CPUs (load average "
        f"{result['load_average_1m_at_start']:.2f} at start), load: {result['load_generator']}, "
        f"{result['requests']} sequential requests each, {result['connections']} connections "
        f"× {result['seconds']:g} s ({result['idle_seconds']:g} s for idle faults)",
        f"{'':28}{'p50 µs':>9}{'p99 µs':>9}{'added p50':>11}{'added p99':>11}{'req/s':>9}{'÷ direct':>10}"
        f"{'÷ haproxy':>11}{'CPU µs/req':>12}{'÷ haproxy':>11}  goals (p50, p99, ÷ haproxy)",
    ]
    vs, met = result["ratio_vs_haproxy"], result["targets"]["met"]
    cpu, cpu_vs = result["cpu_us_per_request"], result["cpu_vs_haproxy"]
    for name, figures in lat.items():
        added = (
            ("", "")
            if name == "direct"
            else (f"{figures['added_p50']:+11.1f}", f"{figures['added_p99']:+11.1f}")
        )
        goals = "  " + ", ".join(_verdict(ok) for ok in met[name].values()) if name in met else ""
        rows.append(
            f"{name:28}{figures['p50']:9.1f}{figures['p99']:9.1f}{added[0]:>11}{added[1]:>11}"
            f"{thr[name]:9.0f}{ratio[name]:10.2f}{(f'{vs[name]:.2f}' if name in vs else ''):>11}"
            f"{(f'{cpu[name]:.1f}' if name in cpu else ''):>12}"
            f"{(f'{cpu_vs[name]:.2f}' if name in cpu_vs else ''):>11}{goals}"
        )
    directs = result["direct_rps_runs"]
    rows.append(
        f"direct req/s, measured before and after each hop: {min(directs):.0f}–{max(directs):.0f} "
        f"(mean {thr['direct']:.0f}); each ratio is to the mean of the two around it; CPU µs/req: the hop "
        "process's own CPU time per request it relayed (median of the rounds; ÷ haproxy's, round by round)"
    )
    bascule = result["bascule_ratio_vs_haproxy"]
    rows.append(
        "bascule's ratio ÷ haproxy's: "
        + ("unmeasured (haproxy not installed)" if bascule is None else f"{bascule:.2f}")
        + f" (median of {result['rounds']} round(s)); goals: added p50 <= {TARGET_ADDED_P50_US:g} µs, "
        f"added p99 <= {TARGET_ADDED_P99_US:g} µs, ratio >= {TARGET_VS_HAPROXY:g} × haproxy's; "
        f"ran {result['elapsed_s']:.1f} s"
    )
    return "\n".join(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--requests", type=int, default=5000, help="sequential requests per hop")
    parser.add_argument("--warmup", type=int, default=500, help="requests not measured")
    parser.add_argument("--connections", type=int, default=64, help="concurrent connections")
    parser.add_argument("--seconds", type=float, default=5.0, help="throughput run length")
    parser.add_argument("--idle-seconds", type=float, default=2.0, help="throughput run per idle fault")
    parser.add_argument("--no-idle", dest="idle", action="store_false", help="skip the idle faults")
    parser.add_argument("--rounds", type=int, default=1, help="throughput cycles over every hop (medians)")
    parser.add_argument("--no-wrk", action="store_true", help="use the asyncio load generator")
    parser.add_argument("--no-haproxy", action="store_true", help="leave haproxy out")
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
    if not (1 <= args.seconds <= 20 and 1 <= args.idle_seconds <= 20 and 1 <= args.requests <= 100_000):
        parser.error("--seconds, --idle-seconds must be within [1, 20] and --requests within [1, 100000]")
    if not 1 <= args.rounds <= 10:
        parser.error("--rounds must be within [1, 10]")
    # Bounded: every throughput run plus the sequential requests, with room for a slow start.
    cycle = 10 * (args.seconds + 2) + 20 * (args.idle_seconds + 2)
    deadline = 60 + args.rounds * cycle + 13 * args.requests / 2000
    signal.signal(signal.SIGALRM, lambda *_: sys.exit("benchmark exceeded its time bound"))
    signal.alarm(int(deadline))
    result = run_benchmark(args)
    signal.alarm(0)
    print(json.dumps(result, indent=2) if args.json else render_table(result))


if __name__ == "__main__":
    main()
