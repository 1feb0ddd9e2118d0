"""Locust's half of bascule's load generator. Only ever loaded by locust (``locust -f``) in a
process of its own, never imported into bascule's: locust monkey-patches the standard library.
`bascule.load.LoadGenerator` starts it; docs/load.md says how to start workers by hand.

Configured by the environment:

- ``BASCULE_LOAD_CONFIG``: the `LoadConfig` JSON (design text, entry points, the scenario's load,
  duration, origin, seed, marker);
- ``BASCULE_LOAD_STREAM``: the file this process appends one `RequestSample` JSON line to per
  request. A worker without one (on another machine) sends its samples to the master, which
  writes them to its own stream;
- ``BASCULE_LOAD_MASTER_INFO``: where a master writes ``{"port", "pid"}`` once it listens;
- ``BASCULE_LOAD_MASTER_WAIT``: for a worker started at the same time as its master, that file,
  to take the master's port from.

Each user draws every request from the mix — a write with the mix's probability, else an ask of a
golden question (or of the scenario's own ``load.requests.questions``) — with a data class drawn by
the mix's weights, shapes it with ``load.requests``' templates, and sends it through the edge:
the design's entry points in routing order for that class, failing over on a 5xx, a 429 or a
transport error, as `bascule.edge.Edge` does, over locust's gevent HTTP client.
"""

from __future__ import annotations

import itertools
import json
import os
import random
import sys
import time
from collections.abc import Mapping
from typing import Any, Protocol

import gevent  # type: ignore[import-untyped]
from locust import LoadTestShape, events, task
from locust.contrib.fasthttp import FastHttpUser
from locust.env import Environment
from locust.exception import StopUser
from locust.rpc.protocol import Message
from locust.runners import MasterRunner, Runner, WorkerRunner

from bascule.edge import Edge, EdgeResponse, NoEntryError
from bascule.eventstream import is_event_stream, read_event_stream
from bascule.journal.samples import RequestSample, sample_to_json
from bascule.load.mix import Send, build_request, draw_request, edge_post, golden_pool, sample_from_response
from bascule.load.schedule import (
    CONFIG_ENV,
    MASTER_INFO_ENV,
    MASTER_WAIT_ENV,
    SAMPLES_MESSAGE,
    STARTUP_TIMEOUT,
    STREAM_ENV,
    LoadConfig,
    compute_schedule,
    parse_load_config,
)
from bascule.model.headers import MissingVariableError, resolve_headers
from bascule.stack.corpus import GoldenQuestion, load_golden_set
from bascule.tracecontext import new_trace_id

FORWARD_EVERY = 0.2
"""Seconds a worker without a stream keeps samples before sending them to the master."""
FORWARD_BATCH = 200


def _read_config() -> LoadConfig:
    text = os.environ.get(CONFIG_ENV)
    if not text:
        sys.exit(f"{CONFIG_ENV} is not set: this locustfile runs under bascule's load generator")
    return parse_load_config(text)


def _await_master_port() -> None:
    """A worker started together with its master waits here for the master's port. locust imports
    the locustfile before it parses its options (a locustfile may add options of its own), so
    the port set in ``LOCUST_MASTER_NODE_PORT`` is the one the worker connects to."""
    info = os.environ.get(MASTER_WAIT_ENV)
    if not info:
        return
    until = time.monotonic() + STARTUP_TIMEOUT
    while True:
        try:
            with open(info, encoding="utf-8") as source:
                port = int(json.load(source)["port"])
            break
        except (OSError, ValueError, KeyError, TypeError):
            if time.monotonic() > until:
                sys.exit(f"the locust master did not write its port to {info} in time")
            time.sleep(0.05)
    os.environ["LOCUST_MASTER_NODE_PORT"] = str(port)


_await_master_port()
CONFIG = _read_config()
DESIGN = CONFIG.design()
LOAD = CONFIG.load_spec()
SCHEDULE = compute_schedule(DESIGN, LOAD, CONFIG.duration)
END = CONFIG.origin + CONFIG.duration
"""No request starts after this ``time.monotonic()``; the shape, which ticks once a second,
stops the users soon after."""
EDGE = Edge(DESIGN, CONFIG.entries)
try:
    # Read from this process's environment (inherited from `bascule run`): never from a file.
    HEADERS = resolve_headers(LOAD.requests.headers, os.environ)
except MissingVariableError as exc:
    sys.exit(f"bascule load: {exc}")
_GOLDEN = load_golden_set()
POOLS: dict[str, tuple[GoldenQuestion, ...]] = {c: golden_pool(_GOLDEN, c) for c in LOAD.mix.data_classes}
_USER_NUMBERS = itertools.count(1)


# -- where samples go ----------------------------------------------------------------------------


class _Sink(Protocol):
    def emit(self, record: Mapping[str, Any]) -> None: ...

    def flush(self) -> None: ...


class _FileSink:
    """One ``write`` per line on an ``O_APPEND`` descriptor: a line is in the file, whole, as soon
    as the request ends, for the generator to tail."""

    def __init__(self, path: str) -> None:
        self._fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)

    def emit(self, record: Mapping[str, Any]) -> None:
        os.write(self._fd, (json.dumps(record, separators=(",", ":")) + "\n").encode())

    def flush(self) -> None:
        """Nothing is held back."""


class _Forwarder:
    """Samples of a worker with no stream file, sent to the master in batches.

    The master is on another machine, whose monotonic clock is not this one's: each batch carries
    this clock's time of sending, and the master moves the samples' ``started`` onto its own clock
    (off by the message's one-way delay)."""

    def __init__(self, runner: WorkerRunner) -> None:
        self._runner = runner
        self._batch: list[Mapping[str, Any]] = []

    def emit(self, record: Mapping[str, Any]) -> None:
        self._batch.append(record)
        if len(self._batch) >= FORWARD_BATCH:
            self.flush()

    def flush(self) -> None:
        if self._batch:
            batch, self._batch = self._batch, []
            self._runner.send_message(SAMPLES_MESSAGE, {"sent": time.monotonic(), "samples": batch})

    def run(self) -> None:
        while True:
            gevent.sleep(FORWARD_EVERY)
            self.flush()


class _Output:
    sink: _Sink | None = None

    def emit(self, sample: RequestSample) -> None:
        if self.sink is not None:
            self.sink.emit(sample_to_json(sample))


OUTPUT = _Output()


def _require_stream() -> _FileSink:
    # SystemExit, because locust logs and swallows an Exception raised by an event handler and
    # would make load whose samples go nowhere.
    stream = os.environ.get(STREAM_ENV)
    if not stream:
        sys.exit(f"{STREAM_ENV} is not set: a standalone or master locust needs a file for samples")
    try:
        return _FileSink(stream)
    except OSError as exc:
        sys.exit(f"cannot open the sample stream {stream}: {exc}")


@events.init.add_listener  # type: ignore[untyped-decorator]
def _on_init(environment: Environment, runner: Runner, **_: Any) -> None:
    if isinstance(runner, WorkerRunner) and not os.environ.get(STREAM_ENV):
        forwarder = _Forwarder(runner)
        OUTPUT.sink = forwarder
        runner.greenlet.spawn(forwarder.run)
        return
    sink = _require_stream()
    OUTPUT.sink = sink
    if isinstance(runner, MasterRunner):

        def receive(environment: Environment, msg: Message, **_: Any) -> None:
            offset = time.monotonic() - float(msg.data["sent"])
            for record in msg.data["samples"]:
                sink.emit({**record, "started": float(record["started"]) + offset})

        runner.register_message(SAMPLES_MESSAGE, receive)
        info = os.environ.get(MASTER_INFO_ENV)
        if info:
            partial = f"{info}.partial"
            with open(partial, "w", encoding="utf-8") as out:
                json.dump({"port": runner.server.port, "pid": os.getpid()}, out)
            os.replace(partial, info)


@events.test_stop.add_listener  # type: ignore[untyped-decorator]
def _on_test_stop(environment: Environment, **_: Any) -> None:
    if OUTPUT.sink is not None:
        OUTPUT.sink.flush()


# -- the users -----------------------------------------------------------------------------------


class BasculeUser(FastHttpUser):
    """One client of the service: requests drawn from the mix, sent through the edge."""

    host = next(iter(CONFIG.entries.values()))
    connection_timeout = DESIGN.routing.timeouts.connect
    network_timeout = DESIGN.routing.timeouts.request
    rng: random.Random
    slot: float
    """When this user's next request is due (open model)."""

    def on_start(self) -> None:
        worker = int(getattr(self.environment.runner, "worker_index", 0))
        self.rng = random.Random(f"{CONFIG.seed}/{worker}/{next(_USER_NUMBERS)}")
        self.slot = max(CONFIG.origin, time.monotonic())
        if SCHEDULE.user_rate is not None:
            # Users spawned together would send in bursts, one per period: a random phase
            # spreads their requests, as the arrivals of an open model are.
            self.slot += self.rng.uniform(0.0, 1.0 / SCHEDULE.user_rate)
        gevent.sleep(max(0.0, self.slot - time.monotonic()))

    def wait_time(self) -> float:
        """Closed model: the think time. Open model: until the next slot of this user's period; a
        user that fell behind (a request slower than its period) sends at once, without trying
        to catch up on the requests it missed."""
        if SCHEDULE.user_rate is None:
            return SCHEDULE.think_time
        now = time.monotonic()
        self.slot = max(self.slot + 1.0 / SCHEDULE.user_rate, now)
        return self.slot - now

    @task
    def request(self) -> None:
        if time.monotonic() >= END:
            raise StopUser
        kind, data_class = draw_request(self.rng, LOAD.mix)
        question, path, payload, request_id = build_request(
            LOAD.requests, kind, data_class, self.rng, POOLS, CONFIG.marker
        )
        started = time.monotonic()
        trace_id = new_trace_id()
        try:
            response = edge_post(
                EDGE, self._sender(kind), path, payload, data_class, trace_id=trace_id, headers=HEADERS
            )
        except NoEntryError as exc:
            response = EdgeResponse(None, {"message": str(exc)}, None, (), time.monotonic() - started)
        OUTPUT.emit(
            sample_from_response(
                kind,
                data_class,
                started,
                response,
                question=question,
                request_id=request_id,
                trace_id=trace_id,
            )
        )

    def _sender(self, kind: str) -> Send:
        def send(
            region: str, url: str, payload: Mapping[str, Any], headers: Mapping[str, str]
        ) -> tuple[int | None, dict[str, Any] | None, str | None]:
            response = self.client.post(
                url, json=dict(payload), headers=dict(headers), name=f"{kind} {region}"
            )
            if not response.status_code:
                error = getattr(response, "error", None)
                return None, None, f"{type(error).__name__}: {error}"
            cut = _cut_short(response)
            if cut is not None:  # the status came, the answer did not: a transport failure
                return None, None, cut
            try:
                body = response.json()
            except (ValueError, TypeError):
                body = None
            return response.status_code, body if isinstance(body, dict) else None, None

        return send


def _cut_short(response: Any) -> str | None:
    """Why an answer that came with its status did not come whole, or None. locust's client hands
    on a body cut short — a chunked body without its last chunk, fewer bytes than its
    Content-Length — as if it were whole (only its parser knows, `message_complete`), and HTTP
    cannot tell an event stream ended before its protocol's end mark (`bascule.eventstream`)."""
    content = response.content or b""
    parser = getattr(response, "_response", None)
    if parser is not None and getattr(parser, "message_complete", True) is False:
        return (
            f"IncompleteBody: the connection ended {len(content)} bytes into the answer's body, "
            "before its end"
        )
    headers = response.headers
    if is_event_stream(headers.get("content-type") if headers is not None else None):
        return read_event_stream(content).cut_reason()
    return None


class BasculeShape(LoadTestShape):
    """The scenario's users over time, on the runner's clock, bounded by the load's duration and
    by ``--run-time``."""

    use_common_options = True

    def tick(self) -> tuple[int, float] | None:
        options = self.runner.environment.parsed_options if self.runner is not None else None
        run_time = getattr(options, "run_time", None)
        if run_time and self.get_run_time() >= run_time:  # type: ignore[no-untyped-call]
            return None
        return SCHEDULE.tick(time.monotonic() - CONFIG.origin)
