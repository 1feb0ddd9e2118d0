"""`bascule recover` (`bascule.targets.local.recover`) and the exit paths of a local run: what a
killed run leaves is found from its ledger and cleaned up, and nothing else is ever touched."""

from __future__ import annotations

import contextlib
import json
import os
import random
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from local_helpers import (
    NO_LOAD_ENV,
    RAISE_AFTER_ENV,
    ROOT,
    TEST_TAG_ENV,
    tagged_processes,
    write_small_design,
)

from bascule.errors import TargetError
from bascule.stack.supervisor import Supervisor, process_start_time
from bascule.targets.local import faultstate as fs
from bascule.targets.local.board import FaultBoard
from bascule.targets.local.control import ControlClient, ControlServer
from bascule.targets.local.dns import DnsServer
from bascule.targets.local.effects import Pause, RouteFault, Wipe
from bascule.targets.local.ledger import (
    LEDGER_FILE,
    FaultRecord,
    Ledger,
    Owner,
    PortRecord,
    ProcessRecord,
    RunRecord,
    dump_record,
    read_ledger,
)
from bascule.targets.local.procfs import MARKER_ENV, bound_ports, find_marked, process_alive
from bascule.targets.local.proxy import FaultPlane
from bascule.targets.local.recover import recover
from bascule.targets.local.stack import STATE_FILE

SLEEPER = [sys.executable, "-c", "import time; time.sleep(60)"]
STUBBORN = [
    sys.executable,
    "-c",
    "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); print('ok', flush=True); "
    "time.sleep(60)",
]


@pytest.fixture
def children() -> Iterator[list[subprocess.Popen[bytes]]]:
    started: list[subprocess.Popen[bytes]] = []
    try:
        yield started
    finally:
        for proc in started:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(5)


def spawn(
    children: list[subprocess.Popen[bytes]], argv: list[str], env: dict[str, str] | None = None
) -> tuple[subprocess.Popen[bytes], int]:
    proc = subprocess.Popen(
        argv, env={**os.environ, **(env or {})}, start_new_session=True, stdout=subprocess.PIPE
    )
    children.append(proc)
    start = process_start_time(proc.pid)
    assert start is not None
    return proc, start


def dead_owner() -> Owner:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return Owner(proc.pid, 1)


def write_ledger(run_dir: Path, *records: object) -> Path:
    run_dir.mkdir(parents=True, exist_ok=True)
    path = run_dir / LEDGER_FILE
    path.write_text("".join(dump_record(r) + "\n" for r in records))  # type: ignore[arg-type]
    return path


def test_recover_stops_the_runs_processes_and_spares_a_reused_pid(
    tmp_path: Path, children: list[subprocess.Popen[bytes]]
) -> None:
    marker = uuid.uuid4().hex
    recorded, recorded_start = spawn(children, SLEEPER)
    stranger, stranger_start = spawn(children, SLEEPER)
    unrecorded, _ = spawn(children, SLEEPER, {MARKER_ENV: marker})
    paused, paused_start = spawn(children, SLEEPER)
    os.kill(paused.pid, signal.SIGSTOP)
    stubborn, stubborn_start = spawn(children, STUBBORN)
    assert stubborn.stdout is not None and stubborn.stdout.readline() == b"ok\n"
    listener = socket.create_server(("127.0.0.1", 0))
    free = socket.create_server(("127.0.0.1", 0))
    bound_port, free_port = listener.getsockname()[1], free.getsockname()[1]
    free.close()
    owner = dead_owner()
    try:
        write_ledger(
            tmp_path,
            RunRecord(owner, marker, "d", 0.0),
            ProcessRecord("store-0", recorded.pid, recorded_start, 0.0),
            # The same PID, another start time: a process that merely reused the PID.
            ProcessRecord("gateway-0", stranger.pid, stranger_start + 1, 0.0),
            ProcessRecord("llm-0", paused.pid, paused_start, 0.0),
            ProcessRecord("identity-0", stubborn.pid, stubborn_start, 0.0),
            PortRecord("tcp", bound_port, "route a", 0.0),
            PortRecord("tcp", free_port, "route b", 0.0),
            FaultRecord("run/p0", "hang", 0, None, (Pause("llm-0"),), owner, 0.0),
            FaultRecord("run/p1", "data-loss", 1, None, (Wipe("store-0"),), owner, 0.0),
        )
        (tmp_path / STATE_FILE).write_text("{}")
        report = recover(tmp_path, grace=0.5)
        outcomes = {p.pid: p.outcome for p in report.processes}
        assert outcomes == {
            recorded.pid: "terminated",
            unrecorded.pid: "terminated",
            paused.pid: "terminated",
            stubborn.pid: "killed",
        }
        assert process_alive(stranger.pid, stranger_start)
        assert report.ports_bound == (("tcp", bound_port),) and not report.clean
        faults = {f.key: f for f in report.faults}
        assert "ended with it" in faults["run/p0"].message and "llm-0" in faults["run/p0"].message
        assert "cannot be undone" in faults["run/p1"].message
        assert not (tmp_path / STATE_FILE).exists()
        assert read_ledger(tmp_path / LEDGER_FILE).recovered
        assert any("still bound" in line for line in report.lines())
    finally:
        listener.close()
    again = recover(tmp_path, grace=0.5)
    assert again.previously == "recovered" and again.faults == () and again.processes == ()
    assert again.clean and process_alive(stranger.pid, stranger_start)


def test_recover_needs_a_ledger(tmp_path: Path) -> None:
    with pytest.raises(TargetError, match="no undo ledger"):
        recover(tmp_path)
    write_ledger(tmp_path, ProcessRecord("x", 1, 1, 0.0))
    with pytest.raises(TargetError, match="names no run"):
        recover(tmp_path)


def test_a_live_run_keeps_its_processes_and_gets_back_what_a_dead_injector_left(
    tmp_path: Path, children: list[subprocess.Popen[bytes]]
) -> None:
    replica, replica_start = spawn(children, SLEEPER)
    injector, injector_start = spawn(children, SLEEPER)
    plane, dns, supervisor = FaultPlane(), DnsServer(), Supervisor(tmp_path / "logs")
    board = FaultBoard(plane, dns, supervisor)
    control = ControlServer(plane=plane, dns=dns, supervisor=supervisor, board=board)
    try:
        plane.start()
        dns.start()
        plane.add_route("r", [])
        control.start()
        (tmp_path / STATE_FILE).write_text(
            json.dumps({"control": {"url": control.url, "token": control.token}})
        )
        with Ledger.create(tmp_path / LEDGER_FILE, design="d", marker="m") as ledger:
            ledger.append(ProcessRecord("store-0", replica.pid, replica_start, 0.0))
            orphan = (RouteFault("r", fs.Blackhole()),)
            ledger.append(FaultRecord("inject-dead/p0", "blackhole", 0, None, orphan, dead_owner(), 0.0))
            ledger.append(
                FaultRecord(
                    "inject-live/p0", "latency", 0, None, (), Owner(injector.pid, injector_start), 0.0
                )
            )
        with ControlClient(control.url, control.token) as client:
            client.apply_fault("inject-dead/p0", orphan)
        assert plane.fault("r") == fs.Blackhole()
        report = recover(tmp_path)
        assert report.owner_alive and report.clean and report.processes == ()
        outcomes = {f.key: f.outcome for f in report.faults}
        assert outcomes == {"inject-dead/p0": "reverted", "inject-live/p0": "held-by-live-injector"}
        assert plane.fault("r") == fs.Pass() and board.active() == {}
        assert process_alive(replica.pid, replica_start)
        assert [r.key for r in read_ledger(tmp_path / LEDGER_FILE).active] == ["inject-live/p0"]
    finally:
        control.stop()
        supervisor.stop()
        dns.stop()
        plane.stop()


# -- killing a real run -------------------------------------------------------------------------


def _drive(
    run_dir: Path, design: Path, tag: str, raise_after: int = 0, *, load: bool = True
) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, str(ROOT / "tests" / "local_helpers.py"), "drive", str(run_dir), str(design)],
        env={
            **os.environ,
            TEST_TAG_ENV: tag,
            RAISE_AFTER_ENV: str(raise_after),
            **({} if load else {NO_LOAD_ENV: "1"}),
        },
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        start_new_session=True,  # its own process group, which the kill test kills whole
    )


def _stop_tagged(tag: str) -> None:
    for pid in tagged_processes(tag):
        try:
            os.killpg(pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


def _assert_nothing_left(run_dir: Path, tag: str) -> None:
    assert tagged_processes(tag) == [], "a process of the run is still alive"
    path = run_dir / LEDGER_FILE
    if path.exists():
        state = read_ledger(path)
        assert not [p for p in state.processes if process_alive(p.pid, p.start_time)]
        assert state.run is not None and find_marked(state.run.marker) == []
        assert bound_ports((p.proto, p.port) for p in state.ports) == []


def _read_until(driver: subprocess.Popen[str], wanted: str) -> list[str]:
    assert driver.stdout is not None
    lines: list[str] = []
    while not lines or lines[-1] != wanted:
        line = driver.stdout.readline()
        assert line, f"the driver ended before {wanted!r}: {lines}"
        lines.append(line.strip())
    return lines


@pytest.mark.slow
def test_a_run_killed_at_random_instants_is_always_recovered(tmp_path: Path) -> None:
    """24 runs (a stack, locust, faults) SIGKILLed — the run's process alone, or its whole process
    group — at random instants: a third during start-up (the ledger being written, processes
    spawned, routes opened), a third just after the steady state held (locust starting), a third
    while faults are applied and reverted. After `recover`: no process of the run (by the test's
    tag and by the run's marker), no port of it bound; and every next run's steady state holds
    (each run checks it before it says ``ready``; a last one after the last kill)."""
    design = write_small_design(tmp_path)
    rng = random.Random(20251020)
    began = time.monotonic()
    kinds_seen: set[str] = set()
    killed_mid_fault = killed_with_load = steady = 0
    for attempt in range(24):
        run_dir = tmp_path / f"run-{attempt}"
        tag = uuid.uuid4().hex
        driver = _drive(run_dir, design, tag)
        try:
            if attempt % 3 == 0:
                time.sleep(rng.uniform(0.0, 5.0))
            else:
                _read_until(driver, "ready")
                steady += 1
                time.sleep(rng.uniform(0.0, 1.5) if attempt % 3 == 1 else rng.uniform(2.0, 4.0))
            if attempt % 2:
                os.killpg(driver.pid, signal.SIGKILL)
            else:
                driver.send_signal(signal.SIGKILL)
            out, _ = driver.communicate(timeout=10)
            applied = [line.split()[1] for line in out.splitlines() if line.startswith("applied")]
            kinds_seen |= set(applied)
            killed_mid_fault += bool(applied)
            killed_with_load += "load" in out.split()
            if (run_dir / LEDGER_FILE).exists():
                report = recover(run_dir)
                assert report.clean, report.lines()
                assert not report.owner_alive
            else:
                # Killed before its ledger existed: it had started nothing yet.
                with pytest.raises(TargetError):
                    recover(run_dir)
            _assert_nothing_left(run_dir, tag)
        finally:
            if driver.poll() is None:
                driver.kill()
                driver.wait()
            _stop_tagged(tag)
    tag = uuid.uuid4().hex
    last = _drive(tmp_path / "run-last", design, tag, load=False)
    try:
        _read_until(last, "ready")
        steady += 1
        last.send_signal(signal.SIGTERM)
        last.communicate(timeout=30)
        _assert_nothing_left(tmp_path / "run-last", tag)
    finally:
        if last.poll() is None:
            last.kill()
            last.wait()
        _stop_tagged(tag)
    took = time.monotonic() - began
    print(
        f"\n24 kills: {killed_mid_fault} mid-fault ({sorted(kinds_seen)}), {killed_with_load} with load "
        f"running; {steady} steady states held; {took:.0f} s"
    )
    assert took < 300
    assert killed_mid_fault >= 5 and len(kinds_seen) >= 4, (killed_mid_fault, kinds_seen)
    assert killed_with_load >= 8 and steady == 17


@pytest.mark.slow
@pytest.mark.parametrize("ending", ["SIGTERM", "SIGINT", "exception"])
def test_sigterm_sigint_and_exceptions_revert_and_stop_everything(tmp_path: Path, ending: str) -> None:
    design = write_small_design(tmp_path)
    run_dir = tmp_path / "run"
    tag = uuid.uuid4().hex
    driver = _drive(run_dir, design, tag, raise_after=3 if ending == "exception" else 0)
    try:
        assert driver.stdout is not None
        assert driver.stdout.readline().strip() == "ready"
        applied = 0
        while applied < 2:  # two faults applied (one may have been reverted since)
            line = driver.stdout.readline()
            assert line, "the driver ended before it had applied two faults"
            applied += line.startswith("applied")
        if ending != "exception":
            driver.send_signal(signal.Signals[ending])
        driver.communicate(timeout=30)
        assert driver.returncode != 0
        state = read_ledger(run_dir / LEDGER_FILE)
        assert state.closed and state.active == () and len(state.applied) >= 2
        _assert_nothing_left(run_dir, tag)
        report = recover(run_dir)
        assert report.previously == "closed" and report.clean and report.faults == ()
    finally:
        if driver.poll() is None:
            driver.kill()
            driver.wait()
        _stop_tagged(tag)
