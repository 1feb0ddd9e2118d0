"""Helpers for the local target's tests, and two small programs they run as separate processes.

    python tests/local_helpers.py drive RUN_DIR DESIGN     start a stack, apply faults until killed
    python tests/local_helpers.py poll URL SECONDS         GET URL back to back, one line per answer
                                                           (until SECONDS or stdin is closed)

`drive` is the run that tests kill (SIGKILL, SIGTERM, SIGINT) at random instants; once the stack
is up it checks its steady state (a golden question answered through the edge: ``steady-failed``
and exit 1 otherwise), prints ``ready``, starts locust (recorded in the ledger, carrying the run's
marker, as a run's load is: ``load`` once it is), then prints ``applied <kind>`` /
``reverted <kind>`` as it goes. With ``BASCULE_TEST_NO_LOAD=1`` it starts no load. `poll`
prints ``ready`` once it has a connection, then, at the end, ``<sent> <received> <status>`` per
request (``time.monotonic()``, comparable across
processes), with status 0 for a transport error — the load of the activation-latency test runs
in its own process, as the real load does.
"""

from __future__ import annotations

import os
import random
import signal
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bascule.faults import (  # noqa: E402
    Blackhole,
    ControlPlane,
    Crash,
    Dns,
    DnsAnswer,
    Fault,
    Hang,
    HttpError,
    Latency,
    Refuse,
)
from bascule.model.design import Design  # noqa: E402
from bascule.model.loading import parse_design, read_design  # noqa: E402
from bascule.model.selector import Selector  # noqa: E402
from bascule.plan.model import Action, ActionOp, Touch  # noqa: E402
from bascule.plan.resolve import resolve  # noqa: E402

if TYPE_CHECKING:
    from bascule.load.generator import LoadGenerator, LoadProcess
    from bascule.targets.local.target import LocalTarget

SMALL_DESIGN = """
id: one-region
title: one region, one replica of each component, an identity service
regions:
  - id: aws/us-east-1
    depends_on: [aws-sts]
dependencies:
  aws-sts: {kind: identity, region: aws/us-east-1, token_ttl: 30s}
components:
  gateway: {replicas: {aws/us-east-1: 1}}
  retriever: {replicas: {aws/us-east-1: 1}}
  store: {replicas: {aws/us-east-1: 1}}
  llm: {replicas: {aws/us-east-1: 1}}
replication: {mode: none}
"""

TEST_TAG_ENV = "BASCULE_TEST_TAG"
"""Set by a test on a program it starts; every process the program starts inherits it."""

NO_LOAD_ENV = "BASCULE_TEST_NO_LOAD"

RAISE_AFTER_ENV = "BASCULE_TEST_RAISE_AFTER"
"""`drive` raises an exception once it has applied this many faults (some still in force)."""


def write_small_design(directory: Path) -> Path:
    path = directory / "one-region.yaml"
    path.write_text(SMALL_DESIGN)
    parse_design(SMALL_DESIGN)
    return path


def phase(design: Design, fault: Fault, selector: Selector, index: int = 0) -> tuple[Action, Touch]:
    """The apply action and touch of a one-fault phase, as the planner would make them."""
    touch, problems = resolve(design, fault, selector, ("test",))
    assert not problems, problems
    return Action(0.0, ActionOp.APPLY, index, fault), touch


def tagged_processes(tag: str) -> list[int]:
    """PIDs of live (non-zombie) processes whose environment carries ``TEST_TAG_ENV=tag``."""
    wanted = f"{TEST_TAG_ENV}={tag}".encode()
    found: list[int] = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            environ = (entry / "environ").read_bytes()
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        state = stat[stat.rindex(")") + 2 :].split()[0]
        if wanted in environ.split(b"\0") and state not in ("Z", "X"):
            found.append(int(entry.name))
    return found


def _drive(run_dir: Path, design_path: Path) -> None:
    from bascule.edge import Edge
    from bascule.targets.local.stack import LocalStack
    from bascule.targets.local.target import LocalTarget

    # Ctrl-C is what the tests send: a process started in the background of a shell without job
    # control (a CI script run with `&`) inherits SIGINT ignored, and would carry on through it.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    design = read_design(design_path)
    rng = random.Random(int.from_bytes(os.urandom(4), "big"))
    faults: list[tuple[Fault, Selector]] = [
        (Hang(), Selector(component="store")),
        (Hang(), Selector(component="retriever")),
        (Blackhole(), Selector(component="store")),
        (Refuse(), Selector(component="llm")),
        (Latency(fixed=0.05), Selector(component="retriever")),
        (HttpError(), Selector(dependency="aws-sts")),
        (Dns(answer=DnsAnswer.SERVFAIL), Selector(component="store")),
        (ControlPlane(), Selector(region="aws/us-east-1")),
        (Crash(restart_after=0.2), Selector(component="retriever")),
    ]
    raise_after = int(os.environ.get(RAISE_AFTER_ENV, "0"))
    stack = LocalStack.start(design, design_path, run_dir, control=True)
    with LocalTarget(stack) as target:
        answer = Edge(design, target.entries).ask_once(
            "What pretension is applied to a mooring line?", "internal"
        )
        if not answer.ok:
            print(f"steady-failed {answer.error}", flush=True)
            raise SystemExit(1)
        print("ready", flush=True)
        if not os.environ.get(NO_LOAD_ENV):
            _start_load(design_path, target, run_dir)
            print("load", flush=True)
        index = 0
        while True:
            if raise_after and index >= raise_after:
                raise RuntimeError(f"failing on purpose with {len(target.active())} fault(s) in force")
            held: list[Action] = []
            for _ in range(rng.randint(1, 3)):
                fault, selector = rng.choice(faults)
                action, touch = phase(design, fault, selector, index)
                index += 1
                target.apply(action, touch)
                held.append(action)
                print(f"applied {fault.kind}", flush=True)
            time.sleep(rng.uniform(0.05, 0.4))
            if raise_after and index >= raise_after:
                continue
            for action in held:
                target.revert(action)
                print(f"reverted {action.fault.kind}", flush=True)


def _start_load(design_path: Path, target: LocalTarget, run_dir: Path) -> LoadGenerator:
    # As `bascule run` starts it (runner.traffic): each process in the ledger before the next
    # starts, each carrying the run's marker. The stack's stop ends it.
    from bascule.load.generator import LoadGenerator
    from bascule.model.scenario import Load

    def record(process: LoadProcess) -> None:
        if process.start_time is not None:
            target.record_process(f"load {process.role}", process.pid, process.start_time)

    return LoadGenerator.start(
        design_path,
        target.entries,
        Load(rate=4.0),
        120.0,
        run_dir,
        on_process=record,
        environment=target.process_environment(),
    )


def _poll(url: str, seconds: float) -> None:
    # http.client rather than httpx, one connection, paced: the lighter the load, the less it
    # disturbs what it measures on a machine with few cores.
    import http.client
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    host, port = parts.hostname, parts.port
    assert host is not None and port is not None

    def get(conn: http.client.HTTPConnection) -> int:
        conn.request("GET", parts.path)
        response = conn.getresponse()
        response.read()
        return response.status

    import threading

    closed = threading.Event()

    def watch_stdin() -> None:
        sys.stdin.read()
        closed.set()

    threading.Thread(target=watch_stdin, daemon=True).start()
    conn = http.client.HTTPConnection(host, port, timeout=1.0)
    get(conn)
    print("ready", flush=True)
    deadline = time.monotonic() + seconds
    lines: list[str] = []
    while time.monotonic() < deadline and not closed.is_set():
        sent = time.monotonic()
        try:
            status = get(conn)
        except (OSError, http.client.HTTPException):
            status = 0
            conn.close()
            conn = http.client.HTTPConnection(host, port, timeout=1.0)
        lines.append(f"{sent:.6f} {time.monotonic():.6f} {status}")
        time.sleep(0.001)
    conn.close()
    sys.stdout.write("\n".join(lines) + "\n")


if __name__ == "__main__":
    command = sys.argv[1]
    if command == "drive":
        _drive(Path(sys.argv[2]), Path(sys.argv[3]))
    elif command == "poll":
        _poll(sys.argv[2], float(sys.argv[3]))
    else:
        raise SystemExit(f"unknown command {command!r}")
