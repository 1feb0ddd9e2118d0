"""The fork server (`bascule.stack.forkserver`, `bascule.stack.spawn`) under the supervisor, with a
real reference service forked from it: announce, PIDs and sessions, environment, exit codes,
kill and restart, pause and resume, while-down, stop; and the cold fallback."""

from __future__ import annotations

import os
import signal
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from local_helpers import write_small_design

from bascule.errors import TargetError
from bascule.model.loading import read_design
from bascule.stack.auth import verify_token
from bascule.stack.spawn import (
    FORK_SERVER_ENV,
    ColdProcess,
    ForkedProcess,
    ForkServer,
    fork_refusal,
)
from bascule.stack.supervisor import (
    ProcessSpec,
    ProcessState,
    Supervisor,
    SupervisorEvent,
    process_start_time,
)
from bascule.targets.local.ledger import read_ledger
from bascule.targets.local.procfs import MARKER_ENV, find_marked
from bascule.targets.local.stack import LocalStack

pytestmark = pytest.mark.skipif(fork_refusal({}) is not None, reason=str(fork_refusal({})))

SECRET = "s" * 40


def identity(name: str, *extra: str, group: str = "r1", env: dict[str, str] | None = None) -> ProcessSpec:
    argv = (sys.executable, "-m", "bascule.stack.identity", "--host", "127.0.0.1", "--port", "0", *extra)
    return ProcessSpec(
        name, argv, group=group, env={"BASCULE_TOKEN_SECRET": SECRET, **(env or {})}, restart_delay=0.2
    )


def _ppid(pid: int) -> int:
    stat = Path(f"/proc/{pid}/stat").read_text()
    return int(stat[stat.rindex(")") + 2 :].split()[1])


def _wait(predicate: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.02)
    raise AssertionError("condition not met in time")


@pytest.fixture
def forked(tmp_path: Path) -> Iterator[tuple[Supervisor, ForkServer, list[SupervisorEvent]]]:
    events: list[SupervisorEvent] = []
    server = ForkServer.start(
        tmp_path / "logs" / "fork-server.log", env={MARKER_ENV: "forked-run", "BASCULE_IDENTITY_TTL": "7"}
    )
    sup = Supervisor(tmp_path / "logs", listener=events.append, fork_server=server)
    try:
        yield sup, server, events
    finally:
        sup.stop(timeout=3)


def test_services_are_forked_in_sessions_of_their_own_and_stopped_with_the_server(
    forked: tuple[Supervisor, ForkServer, list[SupervisorEvent]], tmp_path: Path
) -> None:
    sup, server, events = forked
    replicas = sup.start([identity("a"), identity("b")], timeout=30)
    sup.wait_ready(timeout=10)
    assert server.wait_ready() and server.refusal is None
    for replica in replicas:
        assert isinstance(replica.process, ForkedProcess)
        pid = replica.pid
        assert pid is not None and replica.start_time == process_start_time(pid)
        assert _ppid(pid) == server.pid, "a child of the fork server"
        assert os.getsid(pid) == pid and os.getpgid(pid) == pid, "its own session and process group"
        assert replica.url is not None
        assert (
            httpx.post(replica.url + "/v1/token", json={"principal": "x", "region": "r1"}).status_code == 200
        )
    # The spec's environment replaces the server's: the secret is the spec's, the ttl the default
    # (the server's BASCULE_IDENTITY_TTL is not the child's).
    answer = httpx.post(replicas[0].url + "/v1/token", json={"principal": "x", "region": "r1"}).json()
    assert answer["ttl"] == 300.0
    assert verify_token(SECRET, answer["token"], now=time.time()) is not None
    # /proc/PID/environ shows the environment a process was exec'd with: the fork server's, which
    # carries the run's marker, so that `bascule recover` finds every child by it.
    assert set(find_marked("forked-run")) >= {(r.pid, r.start_time) for r in replicas}

    # Nothing but the standard streams is inherited from the server.
    def sockets(pid: int) -> set[str]:
        links = {os.readlink(f"/proc/{pid}/fd/{fd}") for fd in os.listdir(f"/proc/{pid}/fd")}
        return {link for link in links if link.startswith("socket:")}

    assert sockets(server.pid) and not sockets(server.pid) & sockets(replicas[0].pid or -1)
    pids = [(r.pid, r.start_time) for r in replicas]
    sup.stop(timeout=3)
    for pid, start in pids:
        assert pid is not None and process_start_time(pid) != start
    assert process_start_time(server.pid) is None or not server.alive
    assert [e.kind for e in events].count("started") == 2


def test_crash_is_an_exit_by_sigkill_and_the_restart_is_forked_again(
    forked: tuple[Supervisor, ForkServer, list[SupervisorEvent]],
) -> None:
    sup, server, events = forked
    (replica,) = sup.start([identity("a")], timeout=30)
    old_pid = replica.pid
    sup.kill("a", restart_after=0.3)
    _wait(lambda: replica.state is ProcessState.RUNNING and replica.pid != old_pid)
    assert replica.restarts == 1 and replica.pid is not None and _ppid(replica.pid) == server.pid
    assert [e.kind for e in events if e.name == "a"][-3:] == ["killed", "restarting", "started"]
    assert replica.url is not None and httpx.get(replica.url + "/readyz").status_code == 200


def test_an_exit_code_comes_back_with_the_log(
    forked: tuple[Supervisor, ForkServer, list[SupervisorEvent]],
) -> None:
    sup, _, events = forked
    bad = ProcessSpec("bad", identity("bad").argv, env={}, restart_delay=60)  # no secret: usage, exit 2
    with pytest.raises(TargetError, match="exited during start-up") as info:
        sup.start([bad], timeout=30)
    assert "BASCULE_TOKEN_SECRET" in str(info.value)
    _wait(lambda: any(e.kind == "exited" for e in events))
    assert next(e for e in events if e.kind == "exited").returncode == 2


def test_pause_hangs_and_resume_answers_again(
    forked: tuple[Supervisor, ForkServer, list[SupervisorEvent]],
) -> None:
    sup, _, _ = forked
    (replica,) = sup.start([identity("a")], timeout=30)
    assert replica.url is not None
    sup.pause("a")
    with pytest.raises(httpx.ReadTimeout):
        httpx.get(replica.url + "/readyz", timeout=0.3)
    assert replica.process is not None and replica.process.running(), "stopped is not exited"
    sup.resume("a")
    assert httpx.get(replica.url + "/readyz", timeout=5).status_code == 200


def test_while_down_waits_for_the_exit_report(
    forked: tuple[Supervisor, ForkServer, list[SupervisorEvent]],
) -> None:
    sup, _, _ = forked
    (replica,) = sup.start([identity("a")], timeout=30)
    old = replica.process
    assert old is not None
    seen: list[int | None] = []
    sup.while_down("a", lambda: seen.append(old.returncode))
    assert seen == [-signal.SIGKILL]
    _wait(lambda: replica.state is ProcessState.RUNNING and replica.process is not old)


def test_other_commands_start_cold_beside_the_fork_server(
    forked: tuple[Supervisor, ForkServer, list[SupervisorEvent]],
) -> None:
    sup, _, _ = forked
    code = "import http.server as h; s=h.HTTPServer(('127.0.0.1',0),h.BaseHTTPRequestHandler); "
    code += "print(f'listening on http://127.0.0.1:{s.server_address[1]}', flush=True); s.serve_forever()"
    (replica,) = sup.start([ProcessSpec("own", (sys.executable, "-c", code), ready_path=None)], timeout=30)
    assert isinstance(replica.process, ColdProcess) and replica.url is not None


def test_a_dead_fork_server_leaves_its_children_watched_and_later_starts_cold(
    forked: tuple[Supervisor, ForkServer, list[SupervisorEvent]],
) -> None:
    sup, server, _ = forked
    (replica,) = sup.start([identity("a")], timeout=30)
    os.kill(server.pid, signal.SIGKILL)
    _wait(lambda: not server.alive)
    assert replica.process is not None and replica.process.running()
    old_pid = replica.pid
    sup.kill("a", restart_after=0.1)
    _wait(lambda: replica.state is ProcessState.RUNNING and replica.pid != old_pid, timeout=30)
    assert isinstance(replica.process, ColdProcess)


def test_an_exit_after_the_fork_server_died_is_seen_its_code_unknown(
    forked: tuple[Supervisor, ForkServer, list[SupervisorEvent]],
) -> None:
    sup, server, events = forked
    (replica,) = sup.start([identity("a")], timeout=30)
    os.kill(server.pid, signal.SIGKILL)
    _wait(lambda: not server.alive)
    assert replica.pid is not None
    os.kill(replica.pid, signal.SIGTERM)
    _wait(lambda: any(e.kind == "exited" for e in events))
    exited = next(e for e in events if e.kind == "exited")
    assert exited.pid is not None and exited.returncode is None, "its exit code died with the server"


def test_the_fallback_switch_and_what_it_says() -> None:
    assert fork_refusal({FORK_SERVER_ENV: "0"}) == f"{FORK_SERVER_ENV}=0"
    assert fork_refusal({FORK_SERVER_ENV: "off"}) is not None
    assert fork_refusal({FORK_SERVER_ENV: "1"}) is None


def test_the_local_stack_starts_cold_when_told_to(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(FORK_SERVER_ENV, "0")
    path = write_small_design(tmp_path)
    said: list[str] = []
    stack = LocalStack.start(read_design(path), path, tmp_path / "run", timeout=60, progress=said.append)
    try:
        assert f"services start cold ({FORK_SERVER_ENV}=0)" in said
        assert all(isinstance(r.process, ColdProcess) for r in stack.supervisor.replicas())
        assert "fork-server" not in {p.name for p in read_ledger(stack.ledger.path).processes}
    finally:
        stack.stop()
