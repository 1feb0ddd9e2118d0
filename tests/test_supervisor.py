"""Process supervision with real child processes: announce, restart, freeze, pause, stop."""

from __future__ import annotations

import os
import socket
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from bascule.errors import TargetError
from bascule.stack.supervisor import (
    ProcessSpec,
    ProcessState,
    Supervisor,
    SupervisorEvent,
    pid_is,
    process_start_time,
)

SERVER = """
import http.server, socketserver
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200); self.send_header("content-length", "2"); self.end_headers()
        self.wfile.write(b"ok")
    def log_message(self, *a): pass
with socketserver.TCPServer(("127.0.0.1", 0), H) as s:
    print(f"listening on http://127.0.0.1:{s.server_address[1]}", flush=True)
    s.serve_forever()
"""


def spec(name: str, group: str = "r1", delay: float = 0.2) -> ProcessSpec:
    return ProcessSpec(name, (sys.executable, "-c", SERVER), group=group, restart_delay=delay)


@pytest.fixture
def supervisor(tmp_path: Path) -> Iterator[tuple[Supervisor, list[SupervisorEvent]]]:
    events: list[SupervisorEvent] = []
    sup = Supervisor(tmp_path / "logs", listener=events.append)
    try:
        yield sup, events
    finally:
        sup.stop(timeout=2)


def _wait(predicate: object, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():  # type: ignore[operator]
            return
        time.sleep(0.02)
    raise AssertionError("condition not met in time")


def test_start_announce_ready_and_stop(supervisor: tuple[Supervisor, list[SupervisorEvent]]) -> None:
    sup, events = supervisor
    replicas = sup.start([spec("a"), spec("b")])
    sup.wait_ready(timeout=5)
    for replica in replicas:
        assert replica.url is not None and httpx.get(replica.url + "/readyz").status_code == 200
        assert replica.start_time == process_start_time(replica.pid or -1)
    pids = [(r.pid, r.start_time) for r in replicas]
    sup.stop(timeout=2)
    for pid, start in pids:
        assert pid is not None and start is not None and not pid_is(pid, start)
    assert [e.kind for e in events].count("started") == 2


def test_crash_restarts_after_delay_on_a_new_address(
    supervisor: tuple[Supervisor, list[SupervisorEvent]],
) -> None:
    sup, events = supervisor
    (replica,) = sup.start([spec("a")])
    old_pid, old_url = replica.pid, replica.url
    killed_at = time.monotonic()
    sup.kill("a", restart_after=0.5)
    _wait(lambda: replica.state is ProcessState.RUNNING and replica.pid != old_pid)
    assert time.monotonic() - killed_at >= 0.5
    assert replica.restarts == 1 and replica.url is not None
    assert httpx.get(replica.url).status_code == 200
    started = [e for e in events if e.kind == "started"]
    assert len(started) == 2 and started[-1].url == replica.url
    del old_url


def test_frozen_group_keeps_a_crashed_replica_down_until_thaw(
    supervisor: tuple[Supervisor, list[SupervisorEvent]],
) -> None:
    sup, _ = supervisor
    a, b = sup.start([spec("a", group="frozen"), spec("b", group="other")])
    sup.freeze("frozen")
    sup.kill("a", restart_after=0.1)
    sup.kill("b", restart_after=0.1)
    _wait(lambda: b.state is ProcessState.RUNNING and b.restarts == 1)
    time.sleep(0.4)
    assert a.state is ProcessState.DOWN and a.restarts == 0
    sup.thaw("frozen")
    _wait(lambda: a.state is ProcessState.RUNNING and a.restarts == 1)


def test_pause_makes_it_hang_and_resume_brings_it_back(
    supervisor: tuple[Supervisor, list[SupervisorEvent]],
) -> None:
    sup, _ = supervisor
    (replica,) = sup.start([spec("a")])
    assert replica.url is not None
    sup.pause("a")
    with pytest.raises(httpx.ReadTimeout):
        httpx.get(replica.url, timeout=0.3)
    sup.resume("a")
    assert httpx.get(replica.url, timeout=2).status_code == 200


def test_a_process_that_dies_at_start_is_reported_with_its_log(tmp_path: Path) -> None:
    sup = Supervisor(tmp_path)
    try:
        with pytest.raises(TargetError, match="exited during start-up") as info:
            sup.start([ProcessSpec("bad", (sys.executable, "-c", "import sys; sys.exit('boom')"))], timeout=5)
        assert "boom" in str(info.value)
    finally:
        sup.stop(timeout=1)


def test_a_start_that_times_out_says_what_else_it_saw(tmp_path: Path) -> None:
    """A port written in the command instead of {port} (trial 11): the first replica runs but does
    not listen where bascule looks, the second dies on the port the first took. Both are said."""
    with socket.socket() as a, socket.socket() as b:
        a.bind(("127.0.0.1", 0))
        b.bind(("127.0.0.1", 0))
        port_a, port_b = a.getsockname()[1], b.getsockname()[1]
    elsewhere = (
        "import socket, time; s = socket.socket(); s.bind(('127.0.0.1', 0)); s.listen(); time.sleep(60)"
    )
    taken = "import sys; sys.exit('panic: listen tcp 127.0.0.1:6390: bind: address already in use')"
    sup = Supervisor(tmp_path)
    try:
        with pytest.raises(TargetError, match="up did not start within 3 s") as info:
            sup.start(
                [
                    ProcessSpec("up", (sys.executable, "-c", elsewhere), port=port_a, ready_path=None),
                    ProcessSpec(
                        "down", (sys.executable, "-c", taken), port=port_b, ready_path=None, restart_delay=0.2
                    ),
                ],
                timeout=3,
            )
        said = str(info.value)
        assert f"nothing accepts connections on its port, 127.0.0.1:{port_a}" in said
        assert "meanwhile down exited and was restarted" in said
        assert said.endswith(
            "the last line of its log: panic: listen tcp 127.0.0.1:6390: bind: address already in use"
        )
    finally:
        sup.stop(timeout=1)


def test_a_command_that_is_not_there_is_named_with_where_it_was_looked_for(tmp_path: Path) -> None:
    sup = Supervisor(tmp_path / "logs")
    try:
        with pytest.raises(TargetError, match=r"cannot start api: .*svc-missing") as info:
            sup.start([ProcessSpec("api", ("../svc/svc-missing",), cwd=str(tmp_path), port=1)], timeout=1)
        assert f"(a path relative to {tmp_path}, where it runs)" in str(info.value)
    finally:
        sup.stop(timeout=1)


def test_pid_identity_uses_start_time() -> None:
    me = os.getpid()
    start = process_start_time(me)
    assert start is not None and pid_is(me, start) and not pid_is(me, start + 1)


def test_a_parked_replica_starts_only_when_unparked_and_not_while_frozen(
    supervisor: tuple[Supervisor, list[SupervisorEvent]],
) -> None:
    sup, events = supervisor
    sup.park([spec("reserve", group="standby")])
    reserve = sup.replica("reserve")
    time.sleep(0.3)
    assert reserve.state is ProcessState.PARKED and reserve.pid is None
    sup.kill("reserve")  # nothing to kill: a parked replica has no process
    assert reserve.state is ProcessState.PARKED
    sup.freeze("standby")
    asked = time.monotonic()
    assert sup.unpark(["reserve"], after=0.2) == ["reserve"]
    assert sup.unpark(["reserve"]) == []  # already on its way
    time.sleep(0.5)
    assert reserve.state is ProcessState.PARKED, "a frozen control plane starts nothing"
    sup.thaw("standby")
    _wait(lambda: reserve.state is ProcessState.RUNNING)
    assert time.monotonic() - asked >= 0.5 and reserve.url is not None
    assert httpx.get(reserve.url).status_code == 200
    kinds = [e.kind for e in events if e.name == "reserve"]
    assert kinds.index("launching") < kinds.index("started")
    assert reserve.restarts == 0
