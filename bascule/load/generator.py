"""Load generation for a run: locust, driven as subprocesses, its samples streamed back.

locust monkey-patches the standard library when it is imported, so it never runs in bascule's
process: `LoadGenerator` starts ``python -m locust -f bascule/load/locustfile.py`` — one
standalone process, or a master and N workers — and reads the `RequestSample` JSON lines each of
them appends to its stream file, incrementally, while the load runs. See docs/load.md.

This module is also imported by the locustfile, for the parts that do not depend on locust and are
pure: the configuration handed to the locust processes (`LoadConfig`), the users over time
(`LoadSchedule`), the request mix (`draw_request`, `golden_pool`, `new_document`), the edge's
failover over any synchronous HTTP client (`edge_post`) and the sample made of its outcome
(`sample_from_response`). It must never import locust or gevent.

Times are ``time.monotonic()`` seconds, which on Linux every process of the machine shares: the
load's ``origin`` and its samples' ``started`` line up with the runner's clock.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import random
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from types import TracebackType
from typing import IO, Any, Final

from bascule.edge import Edge, EdgeAttempt, EdgeResponse, region_failed
from bascule.errors import PathElement, PlanError, Problem, TargetError
from bascule.journal.samples import RequestSample, hops_from_json, sample_from_json
from bascule.model.design import Design
from bascule.model.loading import parse_design
from bascule.model.scenario import Load, LoadRequests, RequestMix
from bascule.probes.base import render_template
from bascule.probes.grading import grade_answer
from bascule.stack.corpus import DataClass, GoldenQuestion
from bascule.stack.supervisor import process_start_time

__all__ = [
    "CONFIG_ENV",
    "LOCUSTFILE",
    "MASTER_INFO_ENV",
    "MASTER_WAIT_ENV",
    "SAMPLES_MESSAGE",
    "STREAM_ENV",
    "LoadConfig",
    "LoadGenerator",
    "LoadProcess",
    "LoadSchedule",
    "Send",
    "check_load",
    "compute_schedule",
    "draw_request",
    "edge_post",
    "golden_pool",
    "new_document",
    "parse_load_config",
    "sample_from_response",
    "user_slot",
]

LOCUSTFILE: Final = Path(__file__).with_name("locustfile.py")
CONFIG_ENV: Final = "BASCULE_LOAD_CONFIG"
"""The `LoadConfig` as JSON, for every locust process (master, workers, remote workers)."""
STREAM_ENV: Final = "BASCULE_LOAD_STREAM"
"""The file a locust process appends its samples to; a worker without one forwards them to its
master (a worker on another machine)."""
MASTER_INFO_ENV: Final = "BASCULE_LOAD_MASTER_INFO"
"""Where a master writes ``{"port", "pid"}`` once it listens, so workers can be pointed at it."""
MASTER_WAIT_ENV: Final = "BASCULE_LOAD_MASTER_WAIT"
"""For a worker started with its master: the master's info file, from which the locustfile takes
the master's port before locust reads its options."""
SAMPLES_MESSAGE: Final = "bascule-samples"
"""The locust message a worker without a stream file sends its samples to the master in."""

TICK: Final = 1.0
"""How often locust asks a `LoadTestShape` for the number of users (fixed by locust)."""
STARTUP_TIMEOUT: Final = 20.0
"""Seconds for the locust processes to start and the workers to connect."""
STOP_GRACE: Final = 10.0
"""Seconds past ``--run-time`` before the generator kills whatever still runs."""

_READ_BUDGET = 1 << 20
_MAX_LINE = 1 << 20


# -- configuration handed to the locust processes ----------------------------------------------


@dataclass(frozen=True)
class LoadConfig:
    """Everything a locust process needs, self-contained so that a worker on another machine
    needs nothing but this JSON (the design travels as text)."""

    design_path: str
    design_text: str
    entries: dict[str, str]
    load: dict[str, Any]
    """The scenario's `Load`, as JSON."""
    duration: float
    """Seconds of load from ``origin``."""
    origin: float
    """``time.monotonic()`` at which load time 0 falls (the runner's machine)."""
    seed: int
    marker: str
    """Written into the text of every document the load writes."""

    def to_json(self) -> str:
        return json.dumps(asdict(self), separators=(",", ":"))

    def design(self) -> Design:
        return parse_design(self.design_text, self.design_path)

    def load_spec(self) -> Load:
        return Load.model_validate(self.load)


def parse_load_config(text: str) -> LoadConfig:
    """A `LoadConfig` from its JSON. Raises ``ValueError`` when it is not one."""
    try:
        data = json.loads(text)
        return LoadConfig(
            design_path=str(data["design_path"]),
            design_text=str(data["design_text"]),
            entries={str(k): str(v) for k, v in dict(data["entries"]).items()},
            load=dict(data["load"]),
            duration=float(data["duration"]),
            origin=float(data["origin"]),
            seed=int(data["seed"]),
            marker=str(data["marker"]),
        )
    except (ValueError, KeyError, TypeError) as exc:
        raise ValueError(f"not a load configuration: {exc}") from exc


# -- users over time -----------------------------------------------------------------------------


def user_slot(design: Design) -> float:
    """Seconds an open-model user spends per request at most before it falls behind its rate: one
    entry point's connect and request timeouts, and at least a second."""
    timeouts = design.routing.timeouts
    return max(1.0, timeouts.connect + timeouts.request)


@dataclass(frozen=True)
class LoadSchedule:
    """How many locust users run at each instant of load time (seconds since the origin).

    A closed-model load (``users``) runs its users with ``think_time`` between requests. An
    open-model load (``rate``) is approximated with users that each make at most ``user_rate``
    requests a second (locust's ``constant_throughput``), as many as the rate needs: the rate is
    exact while requests take less than `user_slot`, quantised to ``user_rate`` between steps, and
    falls below its target when requests take longer (the users then run back to back).
    """

    levels: tuple[tuple[float, int], ...]
    """``(from, users)`` in time order; the first is from 0."""
    ramp_up: float
    """Seconds over which the first level is reached from 0 (until the first step)."""
    duration: float
    user_rate: float | None
    """Requests per second per user (open model), or None (closed model)."""
    think_time: float

    @property
    def peak_users(self) -> int:
        return max(users for _, users in self.levels)

    def level(self, t: float) -> int:
        """Users at load time ``t`` once any ramp is over."""
        users = self.levels[0][1]
        for start, count in self.levels:
            if start <= t:
                users = count
        return users

    def tick(self, t: float) -> tuple[int, float] | None:
        """What locust's shape answers at load time ``t``: ``(users, spawn rate)``, or None once
        the load is over. The first users are asked for one tick before the origin (they wait for
        it, so that the load starts on time); a ramp asks each tick for the users due at the next
        tick, at the ramp's own pace, so that locust (which blocks while it spawns) stays on time;
        a step is reached at once, at the first tick after its time."""
        if t >= self.duration:
            return None
        fast = float(max(self.peak_users, 1) * 10)
        if t < -TICK:
            return (0, fast)
        t = max(t, 0.0)
        users = self.level(t)
        before_steps = len(self.levels) == 1 or t < self.levels[1][0]
        if users > 0 and self.ramp_up > 0 and t < self.ramp_up and before_steps:
            due = math.ceil(users * min(1.0, (t + TICK) / self.ramp_up))
            return (due, users / self.ramp_up)
        return (users, fast)


def check_load(design: Design, load: Load) -> list[Problem]:
    """What in ``load`` does not fit ``design`` or cannot be run; pure."""
    problems: list[Problem] = []
    mix_path: tuple[PathElement, ...] = ("load", "mix", "data_classes")
    for name in load.mix.data_classes:
        if name not in design.data_classes:
            known = ", ".join(design.data_classes)
            problems.append(
                Problem(f"the design has no data class {name!r} (it has: {known})", (*mix_path, name))
            )
    if sum(load.mix.data_classes.values()) <= 0:
        problems.append(Problem("the mix needs a data class with a weight above 0", mix_path))
    unit = "users" if load.users is not None else "rate"
    for index, step in enumerate(load.steps):
        given = [name for name in ("users", "rate") if getattr(step, name) is not None]
        if given != [unit]:
            problems.append(
                Problem(f"a step of a {unit} load gives {unit} (and only that)", ("load", "steps", index))
            )
    return problems


def compute_schedule(design: Design, load: Load, duration: float) -> LoadSchedule:
    """The users over time of ``load`` for ``duration`` seconds. Raises `PlanError` when the load
    does not fit the design (`check_load`), ``ValueError`` when ``duration`` is not above 0."""
    if not duration > 0:
        raise ValueError(f"the load duration must be above 0 s, got {duration}")
    problems = check_load(design, load)
    if problems:
        raise PlanError(problems)
    steps = sorted(load.steps, key=lambda s: s.at)
    if load.users is not None:
        levels = [(0.0, load.users), *((s.at, s.users or 0) for s in steps)]
        return LoadSchedule(_merge(levels), load.ramp_up, duration, None, load.think_time)
    assert load.rate is not None
    rates = [(0.0, load.rate), *((s.at, s.rate or 0.0) for s in steps)]
    peak = max(rate for _, rate in rates)
    user_rate = peak / math.ceil(peak * user_slot(design))
    # The epsilon keeps a rate that is an exact multiple of user_rate from asking one user too many.
    levels = [(at, math.ceil(rate / user_rate - 1e-9)) for at, rate in rates]
    return LoadSchedule(_merge(levels), load.ramp_up, duration, user_rate, load.think_time)


def _merge(levels: Sequence[tuple[float, int]]) -> tuple[tuple[float, int], ...]:
    # A step at 0 replaces the base level instead of making a zero-length one.
    out: list[tuple[float, int]] = []
    for at, users in levels:
        if out and out[-1][0] == at:
            out[-1] = (at, users)
        else:
            out.append((at, users))
    return tuple(out)


# -- the request mix -------------------------------------------------------------------------------


def draw_request(rng: random.Random, mix: RequestMix) -> tuple[str, str]:
    """``("ask" | "write", data_class)``: a write with probability ``mix.writes``, the class by the
    mix's weights for both."""
    kind = "write" if rng.random() < mix.writes else "ask"
    names = [name for name, weight in mix.data_classes.items() if weight > 0]
    weights = [mix.data_classes[name] for name in names]
    return kind, rng.choices(names, weights=weights)[0]


def golden_pool(golden: Sequence[GoldenQuestion], data_class: str) -> tuple[GoldenQuestion, ...]:
    """The golden questions an ask of ``data_class`` draws from: those of that class; else those
    of less sensitive classes (a request may carry a stricter class than its documents); else
    (a class the corpus does not know) all of them."""
    exact = tuple(q for q in golden if q.data_class.value == data_class)
    if exact:
        return exact
    known = {c.value: c for c in DataClass}
    if data_class in known:
        rank = known[data_class].rank
        lower = tuple(q for q in golden if q.data_class.rank < rank)
        if lower:
            return lower
    return tuple(golden)


def new_document(data_class: str, marker: str) -> dict[str, Any]:
    """A document for a load write: a unique ``load-<uuid>`` id, the run's marker in its text."""
    doc_id = f"load-{uuid.uuid4().hex}"
    return {
        "id": doc_id,
        "title": f"Load write {doc_id}",
        "text": f"Written by bascule's load generator. Marker bascule-load-{marker} document {doc_id}.",
        "data_class": data_class,
        # Stored and replicated like any write, but kept out of search: the load must not change
        # the answers the golden set grades (see the store's SYNTHETIC_TAG).
        "tags": ["synthetic"],
    }


def build_request(
    requests: LoadRequests,
    kind: str,
    data_class: str,
    rng: random.Random,
    pools: Mapping[str, Sequence[GoldenQuestion]],
    marker: str,
) -> tuple[GoldenQuestion | None, str, dict[str, Any], str | None]:
    """``(golden question or None, path, payload, request id)`` of one load request: a write of a
    new document, or an ask of a golden question of the class (or of the scenario's own)."""
    if kind == "write":
        document = new_document(data_class, marker)
        if requests.write is None:
            return None, requests.write_path, document, document["id"]
        values = {"id": document["id"], "text": document["text"], "data_class": data_class}
        return None, requests.write_path, _as_dict(render_template(requests.write, values)), document["id"]
    question: GoldenQuestion | None = None
    if requests.questions:
        text = rng.choice(requests.questions)
    else:
        question = rng.choice(pools[data_class])
        text = question.question
    payload = _as_dict(render_template(requests.ask, {"question": text, "data_class": data_class}))
    return question, requests.ask_path, payload, None


def _as_dict(value: object) -> dict[str, Any]:
    assert isinstance(value, dict)
    return value


# -- the edge over a synchronous client ---------------------------------------------------------

Send = Callable[[str, str, Mapping[str, Any]], tuple[int | None, dict[str, Any] | None, str | None]]
"""``send(region, url, payload) -> (status, body, error)``: one POST; a transport failure is
``(None, None, "Type: message")`` and never an exception."""


def edge_post(
    edge: Edge,
    send: Send,
    path: str,
    payload: Mapping[str, Any],
    data_class: str,
    *,
    clock: Callable[[], float] = time.monotonic,
) -> EdgeResponse:
    """`Edge.post` for a synchronous client (locust's): the edge's candidates in order, regions
    whose breaker refuses tried last, a 5xx, a 429 or a transport error a region failure (next
    region), any other answer final. Raises `NoEntryError` when no region may take the class."""
    began = clock()
    attempts: list[EdgeAttempt] = []
    last: tuple[int | None, dict[str, Any] | None, str | None] = (None, None, None)
    tickets = [(region, edge.breakers[region].acquire()) for region in edge.candidates(data_class)]
    ranked = [t for t in tickets if t[1] is not None] + [t for t in tickets if t[1] is None]
    for region, ticket in ranked:
        breaker = edge.breakers[region]
        started = clock()
        status, body, error = send(region, edge.entries[region] + path, payload)
        attempts.append(EdgeAttempt(region, status, error, clock() - started))
        last = (status, body, region)
        if status is None or region_failed(status):
            if ticket is not None:
                breaker.fail(ticket)
            continue
        if ticket is not None:
            breaker.succeed(ticket)
        break
    status, body, answered_by = last
    return EdgeResponse(status, body, answered_by, tuple(attempts), clock() - began)


def sample_from_response(
    kind: str,
    data_class: str,
    started: float,
    response: EdgeResponse,
    *,
    question: GoldenQuestion | None = None,
    request_id: str | None = None,
) -> RequestSample:
    """The load sample of one request through the edge. ``correct`` grades a successful answer
    to a golden question; it is None for writes and for requests that got no answer."""
    body = response.body or {}
    correct: bool | None = None
    if question is not None and response.ok:
        citations = body.get("citations")
        cited = [str(c) for c in citations] if isinstance(citations, list) else []
        correct = grade_answer(question, str(body.get("answer", "")), cited)
    served_by = body.get("served_by")
    return RequestSample(
        source="load",
        kind=kind,
        started=started,
        latency=response.seconds,
        ok=response.ok,
        status=response.status,
        data_class=data_class,
        entry_region=response.region if response.status is not None else None,
        hops=hops_from_json(served_by if isinstance(served_by, list) else None),
        correct=correct,
        degraded=bool(body.get("degraded", False)),
        error=response.error,
        request_id=request_id,
    )


# -- the generator -------------------------------------------------------------------------------


@dataclass(frozen=True)
class LoadProcess:
    """One locust process, named for good by its PID and kernel start time (for the undo ledger)."""

    role: str
    """``standalone``, ``master`` or ``worker-<n>``."""
    pid: int
    start_time: int | None
    log: Path
    stream: Path | None


class _Tail:
    """Complete lines appended to a file since the last read; a partial last line is kept for the
    next read, a line longer than ``max_line`` is dropped (counted)."""

    def __init__(self, path: Path, *, max_line: int = _MAX_LINE) -> None:
        self.path = path
        self._file: IO[bytes] | None = None
        self._pending = b""
        self._skipping = False
        self._max_line = max_line
        self.dropped = 0

    def read(self, budget: int = _READ_BUDGET) -> list[bytes]:
        if self._file is None:
            try:
                self._file = self.path.open("rb")
            except FileNotFoundError:
                return []
        chunk = self._file.read(budget)
        if not chunk:
            return []
        data = self._pending + chunk
        *lines, self._pending = data.split(b"\n")
        if self._skipping and lines:
            lines.pop(0)
            self._skipping = False
        if len(self._pending) > self._max_line:
            if not self._skipping:
                self.dropped += 1
            self._pending = b""
            self._skipping = True
        return [line for line in lines if line.strip()]

    def close(self) -> None:
        if self._file is not None:
            self._file.close()


@dataclass
class LoadGenerator:
    """Locust processes making a scenario's load against a stack's entry points; their samples
    read back incrementally. Start with `LoadGenerator.start`; always `stop` (or use ``with``)."""

    config: LoadConfig
    schedule: LoadSchedule
    directory: Path
    processes: tuple[LoadProcess, ...]
    deadline: float
    """``time.monotonic()`` after which the generator kills whatever still runs."""
    master_port: int | None = None
    received: dict[str, int] = field(default_factory=dict)
    """Samples read so far, per process role."""
    malformed: int = 0
    """Stream lines that were not samples (or too long to be)."""
    expired: bool = False
    """Whether the hard deadline had to stop the processes."""
    _popens: dict[int, subprocess.Popen[bytes]] = field(default_factory=dict, repr=False)
    _tails: dict[str, _Tail] = field(default_factory=dict, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _watchdog: threading.Timer | None = field(default=None, repr=False)

    @classmethod
    def start(
        cls,
        design_path: str | Path,
        entries: Mapping[str, str],
        load: Load,
        duration: float,
        run_dir: Path,
        *,
        workers: int = 0,
        remote_workers: int = 0,
        seed: int | None = None,
        origin: float | None = None,
        master_bind: str = "127.0.0.1",
        master_port: int = 0,
        startup_timeout: float = STARTUP_TIMEOUT,
        on_process: Callable[[LoadProcess], None] | None = None,
    ) -> LoadGenerator:
        """Start locust against ``entries`` (region → gateway entry URL) for ``duration`` seconds
        from ``origin`` (``time.monotonic()``; default now), the shape computed from ``load``.

        Without workers, one standalone process. With ``workers`` and/or ``remote_workers``, a
        master bound to ``master_bind``:``master_port`` (0: any free port, see `master_port`)
        that waits up to ``startup_timeout`` for ``workers`` local worker processes plus
        ``remote_workers`` attached from elsewhere (docs/load.md). ``on_process`` sees each
        process as soon as it exists, before the next one starts (for the undo ledger).

        Raises `PlanError` when the load does not fit the design, ``ValueError`` on bad
        arguments, `TargetError` when locust does not start.
        """
        if workers < 0 or remote_workers < 0:
            raise ValueError("workers and remote_workers count processes: they cannot be negative")
        if not entries:
            raise ValueError("no entry point to send load to")
        now = time.monotonic()
        origin = now if origin is None else origin
        if origin + duration <= now:
            raise ValueError("the load window is already over")
        path = Path(design_path)
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise TargetError(f"cannot read the design {path}: {exc}") from exc
        config = LoadConfig(
            design_path=str(path),
            design_text=text,
            entries=dict(entries),
            load=load.model_dump(mode="json", by_alias=True),
            duration=duration,
            origin=origin,
            seed=random.SystemRandom().randrange(2**31) if seed is None else seed,
            marker=uuid.uuid4().hex[:16],
        )
        schedule = compute_schedule(config.design(), load, duration)
        directory = (run_dir / "load").resolve()
        directory.mkdir(parents=True, exist_ok=True)
        (directory / "config.json").write_text(config.to_json(), encoding="utf-8")
        run_time = math.ceil(origin + duration - now + startup_timeout)
        generator = cls(config, schedule, directory, (), now + run_time + STOP_GRACE)
        generator._watchdog = threading.Timer(generator.deadline - now, generator._expire)
        generator._watchdog.daemon = True
        generator._watchdog.start()
        env = _environment(config)
        common = ["--headless", "--only-summary", "--run-time", f"{run_time}s"]
        notify = on_process or (lambda _: None)
        try:
            if workers == 0 and remote_workers == 0:
                notify(generator._spawn("standalone", common, env))
                return generator
            info = directory / "master.json"
            info.unlink(missing_ok=True)
            master_args = [
                *common,
                "--master",
                "--master-bind-host",
                master_bind,
                "--master-bind-port",
                str(master_port),
                "--expect-workers",
                str(workers + remote_workers),
                "--expect-workers-max-wait",
                str(math.ceil(startup_timeout)),
            ]
            master = generator._spawn("master", master_args, {**env, MASTER_INFO_ENV: str(info)})
            notify(master)
            # Started with the master rather than after it, the workers learn its port (known
            # once it listens) from the master's info file: their startup overlaps the master's.
            worker_args = ["--worker", "--master-host", _local_address(master_bind)]
            worker_env = {**env, MASTER_WAIT_ENV: str(info)}
            for index in range(1, workers + 1):
                notify(generator._spawn(f"worker-{index}", worker_args, worker_env))
            generator.master_port = generator._wait_for_master(master, info, now + startup_timeout)
        except BaseException:
            generator.stop()
            raise
        return generator

    def _spawn(self, role: str, args: Sequence[str], env: Mapping[str, str]) -> LoadProcess:
        stream = self.directory / f"{role}.jsonl"
        stream.unlink(missing_ok=True)
        log_path = self.directory / f"{role}.log"
        argv = [sys.executable, "-m", "locust", "-f", str(LOCUSTFILE), *args]
        with log_path.open("wb") as log:
            try:
                popen = subprocess.Popen(
                    argv,
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    env={**env, STREAM_ENV: str(stream)},
                    cwd=self.directory,
                    start_new_session=True,
                )
            except OSError as exc:
                raise TargetError(f"cannot start locust ({role}): {exc}") from exc
        process = LoadProcess(role, popen.pid, process_start_time(popen.pid), log_path, stream)
        with self._lock:
            self._popens[popen.pid] = popen
            self.processes = (*self.processes, process)
            self._tails[role] = _Tail(stream)
            self.received[role] = 0
        return process

    def _wait_for_master(self, master: LoadProcess, info: Path, until: float) -> int:
        popen = self._popens[master.pid]
        while time.monotonic() < until:
            with contextlib.suppress(FileNotFoundError, ValueError, KeyError, TypeError):
                return int(json.loads(info.read_text(encoding="utf-8"))["port"])
            if popen.poll() is not None:
                raise TargetError(f"the locust master exited ({popen.returncode}):\n{_tail_of(master.log)}")
            time.sleep(0.05)
        raise TargetError(
            f"the locust master did not listen within the startup timeout:\n{_tail_of(master.log)}"
        )

    # -- samples -------------------------------------------------------------------------------

    def poll(self) -> list[RequestSample]:
        """The samples appended since the last call (at most about 1 MiB per stream per call;
        the rest comes next time). Never blocks."""
        out: list[RequestSample] = []
        for role, tail in self._tails.items():
            before = tail.dropped
            for line in tail.read():
                try:
                    out.append(sample_from_json(json.loads(line)))
                    self.received[role] += 1
                except (ValueError, TypeError, AttributeError):
                    self.malformed += 1
            self.malformed += tail.dropped - before
        return out

    def samples(self, *, interval: float = 0.05) -> Iterator[RequestSample]:
        """Every sample, as it arrives, until the processes have exited and their streams are
        read to the end (stopped at the hard deadline at the latest)."""
        while True:
            batch = self.poll()
            yield from batch
            if batch:
                continue
            if not self.running():
                final = self.poll()
                if not final:
                    return
                yield from final
                continue
            time.sleep(interval)

    # -- processes -----------------------------------------------------------------------------

    def running(self) -> bool:
        """Whether any locust process is still alive."""
        return any(popen.poll() is None for popen in self._popens.values())

    def wait(self, timeout: float) -> bool:
        """Wait up to ``timeout`` seconds for every process to exit by itself; tell whether they did."""
        until = time.monotonic() + timeout
        while self.running():
            if time.monotonic() >= until:
                return False
            time.sleep(0.05)
        return True

    def pids(self) -> list[tuple[int, int | None]]:
        """``(pid, kernel start time)`` of every process started, for the undo ledger."""
        return [(p.pid, p.start_time) for p in self.processes]

    def returncodes(self) -> dict[str, int | None]:
        return {p.role: self._popens[p.pid].poll() for p in self.processes}

    def stop(self, timeout: float = 5.0) -> None:
        """SIGTERM to each process group still running, SIGKILL to what is left after
        ``timeout``. Calling it again does nothing more. Samples already written stay readable
        with `poll`."""
        with self._lock:
            if self._watchdog is not None and self._watchdog is not threading.current_thread():
                self._watchdog.cancel()
            alive = [p for p in self._popens.values() if p.poll() is None]
            for popen in alive:
                _signal_group(popen, signal.SIGTERM)
            until = time.monotonic() + timeout
            for popen in alive:
                with contextlib.suppress(subprocess.TimeoutExpired):
                    popen.wait(max(0.0, until - time.monotonic()))
            for popen in alive:
                if popen.poll() is None:
                    _signal_group(popen, signal.SIGKILL)
                    popen.wait()

    def _expire(self) -> None:
        if self.running():
            self.expired = True
        self.stop()

    def close(self) -> None:
        """`stop`, then release the stream files."""
        self.stop()
        for tail in self._tails.values():
            tail.close()

    def __enter__(self) -> LoadGenerator:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, value: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


def _signal_group(popen: subprocess.Popen[bytes], sig: signal.Signals) -> None:
    # Not reaped yet, so the PID (and its group, led by it) is still ours.
    if popen.poll() is None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(popen.pid, sig)


def _environment(config: LoadConfig) -> dict[str, str]:
    # locust reads LOCUST_* variables as options; the run's own options must be the only ones.
    env = {k: v for k, v in os.environ.items() if not k.startswith("LOCUST_")}
    env[CONFIG_ENV] = config.to_json()
    env["PYTHONUNBUFFERED"] = "1"
    return env


def _local_address(bind: str) -> str:
    if bind in ("", "*", "0.0.0.0"):
        return "127.0.0.1"
    if bind == "::":
        return "::1"
    return bind


def _tail_of(path: Path, lines: int = 15) -> str:
    try:
        return "\n".join(path.read_text(encoding="utf-8", errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"
