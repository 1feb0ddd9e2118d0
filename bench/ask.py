"""Benchmark of the reference stack's ``POST /v1/ask``: throughput and latency, healthy stack.

Starts a design's whole reference stack on this machine (`LocalStack`), with the llm answering at
once (no time to first token, no generation pace), and sends golden questions of one data class
to the entry of the first region allowed for that class. For each concurrency level, N asyncio
workers share one keep-alive `httpx.AsyncClient` and send the next request as soon as the previous
one is answered (a closed loop): after a warm-up that is not recorded, each level runs for a
bounded time and a bounded number of requests, and reports requests per second, the client-side
latency (p50, p90, p99, max), the errors and the gateway's own ``latency_ms`` (p50).

The load generator runs in a child process (this script with ``--generate``): the stack's fault
plane and DNS server are threads of the process that starts the stack, and a generator sharing
their interpreter lock would slow every hop down. Generator and stack still share this machine's
CPUs, so the figures are those of the stack and its client together, not of the stack alone; the
CPU seconds each side used during the recorded window are reported next to them.

Acceptance of issue 3: figures for the healthy stack, with zero llm latency.

    python bench/ask.py                           # table
    python bench/ask.py --json                    # one JSON object
    python bench/ask.py --concurrency 1,8 --duration 5 --data-class confidential
    python bench/ask.py --otlp                    # the stack exporting its spans (bascule run --otlp)
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import itertools
import json
import os
import platform
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from types import FrameType
from typing import Final

import httpx

from bascule.model.loading import read_design
from bascule.stack.corpus import GoldenQuestion, load_golden_set
from bascule.targets.local.stack import LocalStack
from bascule.traces import TraceReceiver

DEFAULT_DESIGN: Final = "designs/active-passive-sovereign.yaml"
DATA_CLASSES: Final = ("internal", "confidential", "public")
MAX_DURATION_S: Final = 120.0
MAX_WARMUP_S: Final = 30.0
MAX_CONCURRENCY: Final = 256
MAX_LEVELS: Final = 8
MAX_REQUESTS_PER_LEVEL: Final = 200_000
START_TIMEOUT_S: Final = 15.0
REQUEST_TIMEOUT_S: Final = 5.0
CHILD_START_S: Final = 3.0
OPEN: Final = "window open"
# The llm's latency profile falls back to these variables, which the stack's processes inherit;
# they are cleared so that the llm answers at once whatever the caller's environment holds.
LLM_LATENCY_VARIABLES: Final = ("BASCULE_LLM_TTFT", "BASCULE_LLM_TOKENS_PER_SECOND")


class BenchError(Exception):
    """The benchmark cannot run or a load generator failed."""


class Interrupted(KeyboardInterrupt):
    """SIGTERM or the time bound: the run ends early, as on Ctrl-C, and the stack is stopped.

    A `KeyboardInterrupt` so that every ``except Exception`` on the way lets it through, as it
    does Ctrl-C.
    """


# --- figures ------------------------------------------------------------------------------------


def percentile(ordered: Sequence[float], q: float) -> float:
    """Nearest-rank percentile of an already sorted, non-empty sequence."""
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


@dataclass
class Samples:
    """What the workers of one level saw during the recorded window."""

    latencies_s: list[float] = field(default_factory=list)
    gateway_ms: list[float] = field(default_factory=list)
    errors: Counter[str] = field(default_factory=Counter)
    degraded: int = 0
    last_done: float = 0.0

    @property
    def count(self) -> int:
        return len(self.latencies_s) + sum(self.errors.values())


@dataclass(frozen=True)
class LevelResult:
    concurrency: int
    requests: int
    ok: int
    errors: int
    error_kinds: dict[str, int]
    degraded: int
    window_s: float
    requests_per_s: float
    latency_ms: dict[str, float]
    gateway_latency_p50_ms: float | None
    stopped_by: str
    generator_cpu_s: float
    # Filled in by the parent, which sees the stack: its own process (fault plane, DNS server,
    # supervisor threads) and the stack's replica processes.
    plane_cpu_s: float | None = None
    replicas_cpu_s: float | None = None
    # Every process of the machine, this benchmark's and others': what is left over is load
    # that has nothing to do with the benchmark and skews it.
    machine_cpu_s: float | None = None


def compute_level(
    concurrency: int,
    samples: Samples,
    *,
    window_s: float,
    generator_cpu_s: float,
) -> LevelResult:
    """The figures of one level from its samples (latency of successful requests only)."""
    ordered = sorted(samples.latencies_s)
    latency_ms = (
        {
            "p50": percentile(ordered, 0.50) * 1e3,
            "p90": percentile(ordered, 0.90) * 1e3,
            "p99": percentile(ordered, 0.99) * 1e3,
            "max": ordered[-1] * 1e3,
            "mean": sum(ordered) / len(ordered) * 1e3,
        }
        if ordered
        else {}
    )
    gateway = sorted(samples.gateway_ms)
    return LevelResult(
        concurrency=concurrency,
        requests=samples.count,
        ok=len(ordered),
        errors=sum(samples.errors.values()),
        error_kinds=dict(samples.errors),
        degraded=samples.degraded,
        window_s=window_s,
        requests_per_s=samples.count / window_s if window_s > 0 else 0.0,
        latency_ms=latency_ms,
        gateway_latency_p50_ms=percentile(gateway, 0.5) if gateway else None,
        stopped_by="request cap" if samples.count >= MAX_REQUESTS_PER_LEVEL else "duration",
        generator_cpu_s=generator_cpu_s,
    )


# --- the load generator, run as `python bench/ask.py --generate URL …` in a child process -------


async def _worker(
    client: httpx.AsyncClient,
    url: str,
    questions: Sequence[GoldenQuestion],
    *,
    offset: int,
    record_from: float,
    stop_at: float,
    samples: Samples,
) -> None:
    clock = time.monotonic
    # Workers start at different questions so that concurrent requests do not ask the same one.
    for question in itertools.islice(itertools.cycle(questions), offset % len(questions), None):
        started = clock()
        if started >= stop_at or samples.count >= MAX_REQUESTS_PER_LEVEL:
            return
        body = {"question": question.question, "data_class": question.data_class.value}
        error: str | None = None
        payload: object = None
        try:
            response = await client.post(url, json=body)
            if response.status_code != 200:
                error = f"http {response.status_code}"
            else:
                payload = response.json()
        except (httpx.HTTPError, ValueError) as exc:
            error = type(exc).__name__
        done = clock()
        if started < record_from:
            continue
        samples.last_done = max(samples.last_done, done)
        if error is None and not (isinstance(payload, dict) and isinstance(payload.get("answer"), str)):
            error = "malformed answer"
        if error is not None:
            samples.errors[error] += 1
            continue
        assert isinstance(payload, dict)
        samples.latencies_s.append(done - started)
        gateway_ms = payload.get("latency_ms")
        if isinstance(gateway_ms, int | float):
            samples.gateway_ms.append(float(gateway_ms))
        if payload.get("degraded") is True:
            samples.degraded += 1


async def generate(
    url: str,
    questions: Sequence[GoldenQuestion],
    *,
    concurrency: int,
    warmup_s: float,
    duration_s: float,
    on_open: Callable[[], None],
) -> LevelResult:
    """One closed-loop run at ``concurrency``: warm-up, then the recorded window.

    ``on_open`` is called when the recorded window opens.
    """
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    samples = Samples()
    async with httpx.AsyncClient(
        trust_env=False, limits=limits, timeout=httpx.Timeout(REQUEST_TIMEOUT_S)
    ) as client:
        record_from = time.monotonic() + warmup_s
        stop_at = record_from + duration_s
        workers = asyncio.gather(
            *(
                _worker(
                    client,
                    url,
                    questions,
                    offset=i * 7,
                    record_from=record_from,
                    stop_at=stop_at,
                    samples=samples,
                )
                for i in range(concurrency)
            )
        )
        await asyncio.sleep(warmup_s)
        on_open()
        cpu_at_open = time.process_time()
        await asyncio.wait_for(workers, timeout=duration_s + REQUEST_TIMEOUT_S + 1.0)
        cpu_used = time.process_time() - cpu_at_open
    window = max(samples.last_done, record_from) - record_from
    return compute_level(concurrency, samples, window_s=window, generator_cpu_s=cpu_used)


def questions_of(data_class: str) -> list[GoldenQuestion]:
    return [q for q in load_golden_set() if q.data_class.value == data_class]


def serve_generator(args: argparse.Namespace) -> int:
    """Child side: prints ``OPEN`` when the window opens, then the level's result as JSON."""

    def watch_parent() -> None:
        # The parent closes our stdin when it is done with us, whichever way it ended. A raw
        # read: a thread blocked in the buffered reader would hold its lock at shutdown.
        while os.read(sys.stdin.fileno(), 4096):
            pass
        os._exit(0)

    threading.Thread(target=watch_parent, daemon=True).start()

    def opened() -> None:
        print(OPEN, flush=True)

    try:
        result = asyncio.run(
            generate(
                args.generate,
                questions_of(args.data_class),
                concurrency=args.concurrency[0],
                warmup_s=args.warmup,
                duration_s=args.duration,
                on_open=opened,
            )
        )
    except KeyboardInterrupt:
        return 130
    print(json.dumps(asdict(result)), flush=True)
    return 0


# --- the run ------------------------------------------------------------------------------------


def _replicas_cpu_s(pids: Sequence[int]) -> float | None:
    """User plus system CPU seconds the stack's processes have used so far (Linux only)."""
    total = 0
    for pid in pids:
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            return None
        # The command name may hold spaces and parentheses; the fields follow the last ")".
        fields = stat[stat.rindex(")") + 2 :].split()
        total += int(fields[11]) + int(fields[12])
    return total / os.sysconf("SC_CLK_TCK")


def _machine_cpu_s() -> float | None:
    """CPU seconds all processes of the machine have used so far, summed over CPUs (Linux only)."""
    try:
        first = Path("/proc/stat").read_text().split("\n", 1)[0].split()
    except OSError:
        return None
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(v) for v in first[1:9])
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


def _used(before: float | None, after: float | None) -> float | None:
    return after - before if before is not None and after is not None else None


def run_level(url: str, args: argparse.Namespace, concurrency: int, pids: Sequence[int]) -> LevelResult:
    """One level, its load generated by a child process; adds the CPU the stack used meanwhile."""
    argv = [
        sys.executable,
        str(Path(__file__).resolve()),
        "--generate",
        url,
        f"--concurrency={concurrency}",
        f"--warmup={args.warmup}",
        f"--duration={args.duration}",
        f"--data-class={args.data_class}",
    ]
    proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        if line.strip() != OPEN:
            raise BenchError(f"the load generator did not start (printed {line!r})")
        plane_at_open = time.process_time()
        replicas_at_open = _replicas_cpu_s(pids)
        machine_at_open = _machine_cpu_s()
        line = proc.stdout.readline()
        plane_used = time.process_time() - plane_at_open
        replicas_used = _used(replicas_at_open, _replicas_cpu_s(pids))
        machine_used = _used(machine_at_open, _machine_cpu_s())
        try:
            level = LevelResult(**json.loads(line))
        except (ValueError, TypeError) as exc:
            raise BenchError(f"the load generator failed (printed {line!r})") from exc
    finally:
        if proc.stdin is not None:
            proc.stdin.close()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)
    return dataclasses.replace(
        level, plane_cpu_s=plane_used, replicas_cpu_s=replicas_used, machine_cpu_s=machine_used
    )


def run_benchmark(args: argparse.Namespace, say: Callable[[str], None]) -> dict[str, object]:
    design_path = Path(args.design)
    design = read_design(design_path)
    if args.data_class not in design.data_classes:
        raise BenchError(f"design {design.id} has no data class {args.data_class!r}")
    allowed = design.allowed_regions(args.data_class)
    if not allowed:
        raise BenchError(f"design {design.id} allows no region for {args.data_class!r}")
    region = allowed[0]
    questions = questions_of(args.data_class)
    if not questions:
        raise BenchError(f"the golden set has no {args.data_class!r} question")
    cleared = [name for name in LLM_LATENCY_VARIABLES if os.environ.pop(name, None) is not None]
    load_at_start = os.getloadavg()[0]
    started = time.monotonic()
    levels: list[LevelResult] = []
    receiver = TraceReceiver(design) if args.otlp else None
    spans = SpanDrain(receiver)
    with tempfile.TemporaryDirectory(prefix="bascule-bench-ask-") as run_dir, spans:
        endpoint = None if receiver is None else receiver.endpoint
        stack = LocalStack.start(
            design, design_path, Path(run_dir), timeout=START_TIMEOUT_S, progress=say, otlp_endpoint=endpoint
        )
        try:
            entry = stack.entries()[region]
            pids = [r.pid for r in stack.supervisor.replicas() if r.pid is not None]
            for concurrency in args.concurrency:
                say(f"concurrency {concurrency}: {args.warmup:g} s warm-up, {args.duration:g} s recorded")
                levels.append(run_level(f"{entry}/v1/ask", args, concurrency, pids))
        finally:
            _stop(stack, say)
    return {
        "design": design.id,
        "data_class": args.data_class,
        "region": region,
        "entry": entry,
        "questions": len(questions),
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "platform": platform.platform(),
            "load_average_1m_at_start": load_at_start,
            "load_average_1m_at_end": os.getloadavg()[0],
        },
        "stack": {"processes": len(pids), "cold_start_s": asdict(stack.timings)},
        "otlp": None if receiver is None else {"spans_received": spans.count},
        "llm_latency": "zero (no time to first token, no generation pace)",
        "llm_latency_variables_cleared": cleared,
        "load_generator": "child process, one event loop, one shared httpx.AsyncClient; shares the CPUs",
        "settings": {
            "duration_s": args.duration,
            "warmup_s": args.warmup,
            "request_timeout_s": REQUEST_TIMEOUT_S,
            "max_requests_per_level": MAX_REQUESTS_PER_LEVEL,
        },
        "levels": [asdict(level) for level in levels],
        "elapsed_s": time.monotonic() - started,
    }


class SpanDrain:
    """With ``--otlp``: bascule's trace receiver for the stack's spans, emptied every 0.2 s as a
    run's traffic loop would (its queue is bounded), and stopped on the way out."""

    def __init__(self, receiver: TraceReceiver | None) -> None:
        self.receiver = receiver
        self.count = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._drain, daemon=True)

    def __enter__(self) -> SpanDrain:
        if self.receiver is not None:
            self.receiver.start()
            self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.receiver is not None:
            self._stop.set()
            self._thread.join()
            self.count += len(self.receiver.poll())
            self.receiver.stop()

    def _drain(self) -> None:
        assert self.receiver is not None
        while not self._stop.wait(0.2):
            self.count += len(self.receiver.poll())


def _stop(stack: LocalStack, say: Callable[[str], None]) -> None:
    # A second Ctrl-C or SIGTERM while stopping would leave processes behind; stopping is bounded.
    previous = {signum: signal.signal(signum, signal.SIG_IGN) for signum in (signal.SIGINT, signal.SIGTERM)}
    signal.alarm(0)
    try:
        say("stopping the stack")
        stack.stop()
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def time_bound_s(levels: int, warmup_s: float, duration_s: float) -> float:
    """The longest the run may take before the stack is stopped, if every step used its bound."""
    return START_TIMEOUT_S + levels * (CHILD_START_S + warmup_s + duration_s + REQUEST_TIMEOUT_S + 2.0)


# --- output -------------------------------------------------------------------------------------


def _num(value: float | None, digits: int = 1) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _cpu_columns(level: dict[str, object], cpus: int) -> list[str]:
    """CPU seconds of generator, plane, replicas and everything else, and the machine's busy share."""
    ours = [level["generator_cpu_s"], level["plane_cpu_s"], level["replicas_cpu_s"]]
    machine, window = level["machine_cpu_s"], level["window_s"]
    known = [v for v in ours if isinstance(v, float | int)]
    other = machine - sum(known) if isinstance(machine, float | int) and len(known) == len(ours) else None
    busy = (
        f"{machine / (window * cpus) * 100:.0f}%"
        if isinstance(machine, float | int) and isinstance(window, float | int) and window > 0
        else "-"
    )
    return [*(_num(v if isinstance(v, float | int) else None) for v in ours), _num(other), busy]


def render_table(result: dict[str, object]) -> str:
    machine = result["machine"]
    stack = result["stack"]
    levels = result["levels"]
    settings = result["settings"]
    assert isinstance(machine, dict) and isinstance(stack, dict)
    assert isinstance(levels, list) and isinstance(settings, dict)
    cold = stack["cold_start_s"]
    cpus = int(machine["cpus"] or 1)
    head = (
        f"{'conc':>5}{'requests':>10}{'errors':>8}{'req/s':>9}{'p50 ms':>9}{'p90 ms':>9}"
        f"{'p99 ms':>9}{'max ms':>9}{'gw p50 ms':>11}{'CPU s: gen':>12}{'plane':>7}{'stack':>7}"
        f"{'other':>7}{'busy':>6}"
    )
    rows = [
        f"/v1/ask benchmark — design {result['design']}, data class {result['data_class']} "
        f"-> {result['region']} ({result['entry']}), {result['questions']} golden questions",
        f"machine: {machine['cpus']} CPUs, Python {machine['python']}, {machine['platform']}, "
        f"load average {machine['load_average_1m_at_start']:.2f} at start, "
        f"{machine['load_average_1m_at_end']:.2f} at end",
        f"stack: {stack['processes']} processes, cold start: network {cold['network']:.2f} s, "
        f"announced {cold['announced']:.2f} s, ready {cold['ready']:.2f} s; llm latency zero",
        f"the load generator (a child process, one event loop) shares the {cpus} CPUs with the stack: "
        "figures are for stack and client together",
        "",
        head,
        "-" * len(head),
    ]
    for level in levels:
        assert isinstance(level, dict)
        lat = level["latency_ms"]
        gen, plane, replicas, other, busy = _cpu_columns(level, cpus)
        rows.append(
            f"{level['concurrency']:>5}{level['requests']:>10}{level['errors']:>8}"
            f"{level['requests_per_s']:>9.1f}{_num(lat.get('p50')):>9}{_num(lat.get('p90')):>9}"
            f"{_num(lat.get('p99')):>9}{_num(lat.get('max')):>9}{_num(level['gateway_latency_p50_ms']):>11}"
            f"{gen:>12}{plane:>7}{replicas:>7}{other:>7}{busy:>6}"
        )
    rows.append("")
    for level in levels:
        assert isinstance(level, dict)
        notes = []
        if level["error_kinds"]:
            kinds = ", ".join(f"{kind} ×{n}" for kind, n in sorted(level["error_kinds"].items()))
            notes.append(f"errors: {kinds}")
        if level["degraded"]:
            notes.append(f"{level['degraded']} degraded answers")
        if level["stopped_by"] != "duration":
            notes.append(f"stopped by the {level['stopped_by']}")
        if notes:
            rows.append(f"concurrency {level['concurrency']}: " + "; ".join(notes))
    rows += [
        f"{settings['duration_s']:g} s recorded per level after {settings['warmup_s']:g} s warm-up, closed "
        "loop, keep-alive; latency is client-side, of successful requests; gw = the gateway's latency_ms",
        "CPU seconds in the recorded window: gen = load generator, plane = the process holding the fault "
        "plane and DNS threads, stack = the replica processes, other = the rest of the machine "
        "(not this benchmark); busy = the whole machine's share of its CPUs",
        f"ran {result['elapsed_s']:.1f} s",
    ]
    return "\n".join(rows)


# --- command line -------------------------------------------------------------------------------


def _concurrency_list(text: str) -> list[int]:
    try:
        values = [int(part) for part in text.split(",") if part.strip()]
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"not a comma-separated list of integers: {text!r}") from exc
    if not 1 <= len(values) <= MAX_LEVELS or not all(1 <= v <= MAX_CONCURRENCY for v in values):
        raise argparse.ArgumentTypeError(f"1 to {MAX_LEVELS} levels, each within [1, {MAX_CONCURRENCY}]")
    return values


def _raise_interrupted(reason: str) -> Callable[[int, FrameType | None], None]:
    def handler(signum: int, frame: FrameType | None) -> None:
        raise Interrupted(reason)

    return handler


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--design", default=DEFAULT_DESIGN, help="design file (default: %(default)s)")
    parser.add_argument("--duration", type=float, default=10.0, help="recorded seconds per level")
    parser.add_argument("--concurrency", type=_concurrency_list, default=[1, 4, 16], help="e.g. 1,4,16")
    parser.add_argument("--warmup", type=float, default=2.0, help="unrecorded seconds before each level")
    parser.add_argument("--data-class", choices=DATA_CLASSES, default="internal", help="class asked")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument(
        "--otlp", action="store_true", help="the stack exports its spans to bascule's receiver (--otlp)"
    )
    parser.add_argument("--generate", metavar="URL", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if not 1.0 <= args.duration <= MAX_DURATION_S:
        parser.error(f"--duration must be within [1, {MAX_DURATION_S:g}] seconds")
    if not 0.0 <= args.warmup <= MAX_WARMUP_S:
        parser.error(f"--warmup must be within [0, {MAX_WARMUP_S:g}] seconds")
    if args.generate is not None:
        return serve_generator(args)

    def say(message: str) -> None:
        print(message, file=sys.stderr, flush=True)

    bound = time_bound_s(len(args.concurrency), args.warmup, args.duration)
    signal.signal(signal.SIGTERM, _raise_interrupted("terminated"))
    signal.signal(signal.SIGALRM, _raise_interrupted(f"the run exceeded its time bound of {bound:.0f} s"))
    signal.alarm(int(bound) + 1)
    try:
        result = run_benchmark(args, say)
    except KeyboardInterrupt as exc:
        say(f"interrupted ({str(exc) or 'Ctrl-C'}); the stack was stopped")
        return 130
    except BenchError as exc:
        say(f"error: {exc}")
        return 1
    finally:
        signal.alarm(0)
    print(json.dumps(result, indent=2) if args.json else render_table(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
