"""Process supervision for a stack on one machine: start, watch, restart, freeze, stop.

Like a Deployment controller: a replica that dies is restarted after a delay — unless its region's
control plane is frozen (the ``control-plane`` fault), in which case it stays down until the region
thaws. A *parked* replica is known but not started (the reserve of a pilot-light region);
:meth:`Supervisor.unpark` starts it after a delay, by the same path and under the same freeze.
Processes run in their own session so that a signal reaches the whole process, and each one
is recorded with its kernel start time so that a PID reused by an unrelated process is never
signalled (see :func:`process_start_time`).

A process is started cold (a fresh interpreter) or, given a fork server, the reference stack's
services are forked from it (`bascule.stack.spawn`); either way the supervisor holds the same kind
of handle, and kills, pauses, restarts and stops it alike.

A replica announces its address by printing ``listening on http://HOST:PORT`` once it accepts
connections; the supervisor reads that line, so every replica can bind port 0. A process that
cannot say so (the user's own service) is given its port and counts as started once it accepts a
TCP connection there.
"""

from __future__ import annotations

import logging
import os
import re
import selectors
import signal
import socket
import threading
import time
import typing
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path

import httpx

from bascule.errors import TargetError
from bascule.stack.spawn import ColdProcess, ForkServer, ForkServerError, ProcessHandle

__all__ = [
    "ProcessSpec",
    "ProcessState",
    "Replica",
    "Supervisor",
    "SupervisorEvent",
    "pid_is",
    "process_start_time",
]

_LISTENING = re.compile(rb"listening on (http://\S+)")


_CANCEL_POLL_S = 0.05

_log = logging.getLogger(__name__)


def _check_cancel(cancel: threading.Event | None) -> None:
    if cancel is not None and cancel.is_set():
        raise TargetError("interrupted while the processes were starting")


def process_start_time(pid: int) -> int | None:
    """The kernel's start time of ``pid`` (clock ticks since boot), or ``None`` if it is gone.

    With the PID it identifies a process for good: a PID is reused, the pair is not."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    # The command name (field 2) may hold spaces and parentheses: split after the last ')'.
    fields = stat[stat.rindex(")") + 2 :].split()
    return int(fields[19])


def pid_is(pid: int, start_time: int) -> bool:
    """True when ``pid`` is still the process that started at ``start_time``."""
    return process_start_time(pid) == start_time


@dataclass(frozen=True)
class ProcessSpec:
    name: str
    argv: tuple[str, ...]
    group: str = ""
    """What a freeze acts on: the replica's region."""
    env: Mapping[str, str] = field(default_factory=dict)
    restart_delay: float = 1.0
    ready_path: str | None = "/readyz"
    cwd: str | None = None
    port: int | None = None
    """A process that does not announce itself (an own service) listens here: it counts as started
    once a TCP connection to 127.0.0.1 on this port succeeds."""
    start_timeout: float | None = None
    """Seconds this process may take to start and be ready, when longer than the timeout the whole
    stack is given (a slow starter of the user's own)."""
    slow_start_hint: str = ""
    """Where to raise that limit, said when it runs out."""

    def start_limit(self, timeout: float) -> float:
        """Seconds this process has to start and be ready, given the stack's `timeout`."""
        return max(timeout, self.start_timeout or 0.0)

    def timed_out(self, what: str, timeout: float) -> str:
        hint = f" ({self.slow_start_hint})" if self.slow_start_hint else ""
        return f"{self.name} {what} within {self.start_limit(timeout):g} s{hint}"


class ProcessState(StrEnum):
    PARKED = "parked"
    STARTING = "starting"
    RUNNING = "running"
    PAUSED = "paused"
    DOWN = "down"
    STOPPED = "stopped"


@dataclass
class Replica:
    spec: ProcessSpec
    process: ProcessHandle | None = None
    """Its current process, started cold or forked from the fork server (`bascule.stack.spawn`)."""
    start_time: int | None = None
    url: str | None = None
    state: ProcessState = ProcessState.STARTING
    restarts: int = 0
    restart_at: float | None = None
    announced: threading.Event = field(default_factory=threading.Event)

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process else None


@dataclass(frozen=True)
class SupervisorEvent:
    """``started`` (with url), ``exited`` (with returncode), ``restarting``, ``launching`` (a parked
    replica's first start), ``killed``, ``paused``, ``resumed``, ``frozen``, ``thawed``, ``stopped``."""

    kind: str
    name: str
    pid: int | None = None
    start_time: int | None = None
    url: str | None = None
    returncode: int | None = None


Listener = Callable[[SupervisorEvent], None]


class Supervisor:
    """Owns the processes of one stack. Thread-safe; one watcher thread reads every replica's
    output and restarts what died."""

    def __init__(
        self,
        log_dir: Path,
        *,
        listener: Listener | None = None,
        poll_interval: float = 0.02,
        fork_server: ForkServer | None = None,
        stop_fork_server: bool = True,
    ) -> None:
        """With `fork_server`, the reference stack's services are forked from it (others start
        cold, and so does every process once it cannot fork); `stop` ends it, unless
        `stop_fork_server` is False (a server lent by its owner, who stops it)."""
        self.log_dir = log_dir
        self._fork_server = fork_server if stop_fork_server else None
        self._forks = fork_server
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self._listeners: list[Listener] = [listener] if listener else []
        self._replicas: dict[str, Replica] = {}
        self._frozen: set[str] = set()
        self._lock = threading.RLock()
        self._selector = selectors.DefaultSelector()
        self._stopping = threading.Event()
        self._poll = poll_interval
        self._watcher = threading.Thread(target=self._watch, name="bascule-supervisor", daemon=True)
        self._watcher.start()

    # -- observers -----------------------------------------------------------------------------

    def subscribe(self, listener: Listener) -> None:
        self._listeners.append(listener)

    def _emit(self, event: SupervisorEvent) -> None:
        for listener in list(self._listeners):
            listener(event)

    # -- starting ------------------------------------------------------------------------------

    def start(
        self,
        specs: Sequence[ProcessSpec],
        *,
        timeout: float = 30.0,
        cancel: threading.Event | None = None,
    ) -> list[Replica]:
        """Start every process at once and wait until each has announced its address: within
        `timeout` seconds, or its own ``start_timeout`` when longer. Raises `TargetError` at once
        when `cancel` is set (the processes started stay supervised: `stop` ends them)."""
        with self._lock:
            for spec in specs:
                if spec.name in self._replicas:
                    raise TargetError(f"a process named {spec.name!r} is already supervised")
                replica = Replica(spec)
                self._replicas[spec.name] = replica
                self._spawn(replica)
        began = time.monotonic()
        replicas = [self._replicas[s.name] for s in specs]
        for replica in replicas:
            deadline = began + replica.spec.start_limit(timeout)
            while not replica.announced.wait(min(_CANCEL_POLL_S, max(0.0, deadline - time.monotonic()))):
                _check_cancel(cancel)
                if time.monotonic() >= deadline:
                    break
            _check_cancel(cancel)
            if not replica.announced.is_set():
                raise TargetError(
                    f"{replica.spec.timed_out('did not start', timeout)}; its log: "
                    f"{self.log_path(replica.spec.name)}\n{self.tail(replica.spec.name)}"
                    + self._start_clues(replica, replicas)
                )
            if replica.url is None:
                raise TargetError(
                    f"{replica.spec.name} exited during start-up; its log: "
                    f"{self.log_path(replica.spec.name)}\n{self.tail(replica.spec.name)}"
                )
        return replicas

    def _start_clues(self, late: Replica, started: Sequence[Replica]) -> str:
        """What else the start showed, beside a replica that did not start in time: that its
        process runs while nothing answers on its port, and the replicas that kept exiting meanwhile
        (trial 11: a port written in the command, taken by the first replica; the second's exits
        went unsaid, and raising the timeout, which the message advised, could not help)."""
        clues = []
        process = late.process
        if late.spec.port is not None and process is not None and process.running():
            clues.append(
                f"its process (PID {process.pid}) is running, but nothing accepts connections on its "
                f"port, 127.0.0.1:{late.spec.port}: does its command listen on {{port}}?"
            )
        for other in started:
            if other is not late and other.restarts:
                last = self.tail(other.spec.name, 1)
                clues.append(
                    f"meanwhile {other.spec.name} exited and was restarted {other.restarts} "
                    f"time{'s' if other.restarts != 1 else ''}"
                    + (f"; the last line of its log: {last}" if last else "")
                )
        return "".join(f"\n{clue}" for clue in clues)

    def park(self, specs: Sequence[ProcessSpec]) -> None:
        """Know these processes without starting them (see :meth:`unpark`)."""
        with self._lock:
            for spec in specs:
                if spec.name in self._replicas:
                    raise TargetError(f"a process named {spec.name!r} is already supervised")
                self._replicas[spec.name] = Replica(spec, state=ProcessState.PARKED)

    def unpark(self, names: Sequence[str], *, after: float = 0.0) -> list[str]:
        """Start the named parked replicas ``after`` seconds from now — later if their group is
        frozen then. Returns the names that were parked (the others are left alone)."""
        due = time.monotonic() + after
        moved: list[str] = []
        with self._lock:
            for name in names:
                replica = self.replica(name)
                if replica.state is ProcessState.PARKED and replica.restart_at is None:
                    replica.restart_at = due
                    moved.append(name)
        return moved

    def wait_ready(
        self,
        names: Sequence[str] | None = None,
        *,
        timeout: float = 30.0,
        spent: float = 0.0,
        cancel: threading.Event | None = None,
    ) -> None:
        """Poll each replica's readiness path until it answers 2xx: within `timeout` seconds (or its
        own ``start_timeout`` when longer), of which `spent` went into starting it (at least 1 s
        is left for readiness). Raises `TargetError` at once when `cancel` is set."""
        now = time.monotonic()
        pending = [r for r in self._select(names) if r.spec.ready_path and r.url]
        deadlines = {r.spec.name: now + max(1.0, r.spec.start_limit(timeout) - spent) for r in pending}
        last: dict[str, str] = {}
        """Each replica's last readiness answer: a path it does not serve (404) is not a slow start."""
        with httpx.Client(timeout=1.0, trust_env=False) as client:
            while pending:
                still: list[Replica] = []
                for replica in pending:
                    _check_cancel(cancel)
                    url = replica.url
                    assert url is not None and replica.spec.ready_path is not None
                    try:
                        status = client.get(url + replica.spec.ready_path).status_code
                        ok = 200 <= status < 300
                        last[replica.spec.name] = f"HTTP {status}"
                    except httpx.HTTPError as exc:
                        ok = False
                        last[replica.spec.name] = type(exc).__name__
                    if not ok:
                        still.append(replica)
                pending = still
                late = [r for r in pending if time.monotonic() > deadlines[r.spec.name]]
                if late:
                    raise TargetError(
                        "; ".join(
                            r.spec.timed_out("was not ready", timeout)
                            + f": GET {r.spec.ready_path} last answered {last.get(r.spec.name, 'nothing')}"
                            + (
                                " — is it the path the service serves its readiness on (ready.path)?"
                                if last.get(r.spec.name) == "HTTP 404"
                                else ""
                            )
                            for r in late
                        )
                    )
                if pending:
                    time.sleep(0.05)

    def _spawn(self, replica: Replica) -> None:
        spec = replica.spec
        env = {**os.environ, **spec.env, "PYTHONUNBUFFERED": "1"}
        with self.log_path(spec.name).open("ab") as log:
            process = self._fork(spec, env, log)
            if process is None:
                try:
                    process = ColdProcess.start(spec.argv, env, spec.cwd, log)
                except OSError as exc:
                    # A relative path is the command's own directory's (the design's, by default).
                    where = f" (a path relative to {spec.cwd}, where it runs)" if spec.cwd else ""
                    raise TargetError(f"cannot start {spec.name}: {exc}{where}") from exc
        os.set_blocking(process.stdout.fileno(), False)
        replica.process = process
        replica.start_time = process_start_time(process.pid)
        replica.url = None
        replica.state = ProcessState.STARTING
        replica.announced.clear()
        self._selector.register(process.stdout, selectors.EVENT_READ, (replica, process, bytearray()))

    def _fork(self, spec: ProcessSpec, env: dict[str, str], log: typing.IO[bytes]) -> ProcessHandle | None:
        """The process forked from the fork server, or None when it is to start cold."""
        forks = self._forks
        if forks is None or not forks.serves(spec.argv):
            return None
        try:
            return forks.spawn(spec.argv, env, spec.cwd, log)
        except ForkServerError as exc:
            _log.warning("%s starts cold: %s", spec.name, exc)
            if not forks.alive or forks.refusal is not None:
                self._forks = None  # not asked again: every later start is cold
            return None

    def log_path(self, name: str) -> Path:
        return self.log_dir / f"{name}.log"

    def tail(self, name: str, lines: int = 15) -> str:
        try:
            text = self.log_path(name).read_text(errors="replace")
        except FileNotFoundError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    # -- queries -------------------------------------------------------------------------------

    def replica(self, name: str) -> Replica:
        try:
            return self._replicas[name]
        except KeyError:
            raise TargetError(f"no process named {name!r}") from None

    def replicas(self) -> list[Replica]:
        with self._lock:
            return list(self._replicas.values())

    def _select(self, names: Sequence[str] | None) -> list[Replica]:
        with self._lock:
            return [self._replicas[n] for n in names] if names is not None else list(self._replicas.values())

    def is_frozen(self, group: str) -> bool:
        return group in self._frozen

    # -- faults --------------------------------------------------------------------------------

    def kill(self, name: str, *, restart_after: float | None = None) -> None:
        """SIGKILL the replica; it restarts after ``restart_after`` (default: its spec's delay),
        unless its group is frozen."""
        with self._lock:
            replica = self.replica(name)
            process = replica.process
            if process is None or not process.running():
                return
            delay = replica.spec.restart_delay if restart_after is None else restart_after
            replica.restart_at = time.monotonic() + delay
            replica.state = ProcessState.DOWN
            process.signal(signal.SIGKILL)
        self._emit(SupervisorEvent("killed", name, process.pid, replica.start_time))

    def while_down(self, name: str, action: Callable[[], None], *, timeout: float = 10.0) -> None:
        """Kill the replica, wait until it has exited, run `action`, then let it restart after its
        spec's delay (unless its group is frozen). Raises `TargetError` when it does not exit
        within `timeout`; whatever `action` raises is raised after the restart is scheduled."""
        with self._lock:
            replica = self.replica(name)
            process = replica.process
            replica.restart_at = None
            replica.state = ProcessState.DOWN
            if process is not None and process.running():
                process.signal(signal.SIGKILL)
        if process is not None:
            self._emit(SupervisorEvent("killed", name, process.pid, replica.start_time))
            if not process.wait(timeout):
                raise TargetError(f"{name} did not exit within {timeout:g} s of SIGKILL")
        try:
            action()
        finally:
            with self._lock:
                replica.restart_at = time.monotonic() + replica.spec.restart_delay

    def pause(self, name: str) -> None:
        """SIGSTOP: connections are accepted by the kernel, nothing answers."""
        with self._lock:
            replica = self.replica(name)
            if replica.process and replica.process.running():
                replica.process.signal(signal.SIGSTOP)
                replica.state = ProcessState.PAUSED
        self._emit(SupervisorEvent("paused", name, replica.pid, replica.start_time))

    def resume(self, name: str) -> None:
        with self._lock:
            replica = self.replica(name)
            if replica.process and replica.process.running():
                replica.process.signal(signal.SIGCONT)
                if replica.state is ProcessState.PAUSED:
                    replica.state = ProcessState.RUNNING if replica.url else ProcessState.STARTING
        self._emit(SupervisorEvent("resumed", name, replica.pid, replica.start_time))

    def freeze(self, group: str) -> None:
        """Nothing in ``group`` restarts until :meth:`thaw`."""
        with self._lock:
            self._frozen.add(group)
        self._emit(SupervisorEvent("frozen", group))

    def thaw(self, group: str) -> None:
        """Unfreeze; replicas that died meanwhile restart now (their delay has long passed)."""
        with self._lock:
            self._frozen.discard(group)
        self._emit(SupervisorEvent("thawed", group))

    # -- watching ------------------------------------------------------------------------------

    def _watch(self) -> None:
        while not self._stopping.is_set():
            if self._selector.get_map():
                for key, _ in self._selector.select(self._poll):
                    self._read(key)
            else:
                time.sleep(self._poll)
            self._check_ports()
            self._reap_and_restart()

    def _check_ports(self) -> None:
        waiting = [
            r
            for r in self.replicas()
            if r.spec.port is not None and r.url is None and r.process is not None and r.process.running()
        ]
        for replica in waiting:
            port = replica.spec.port
            assert port is not None
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.05):
                    pass
            except OSError:
                continue
            process = replica.process
            assert process is not None
            with self._lock:
                if replica.process is not process or replica.url is not None:
                    continue
                replica.url = f"http://127.0.0.1:{port}"
                if replica.state is ProcessState.STARTING:
                    replica.state = ProcessState.RUNNING
                replica.announced.set()
            self._emit(
                SupervisorEvent("started", replica.spec.name, process.pid, replica.start_time, replica.url)
            )

    def _read(self, key: selectors.SelectorKey) -> None:
        replica, process, buffer = key.data
        try:
            chunk = os.read(key.fd, 65536)
        except BlockingIOError:
            return
        except OSError:
            chunk = b""
        if not chunk:
            self._selector.unregister(key.fileobj)
            process.stdout.close()
            if replica.process is process and not replica.announced.is_set():
                replica.announced.set()
            return
        buffer.extend(chunk)
        with self.log_path(replica.spec.name).open("ab") as log:
            log.write(chunk)
        match = _LISTENING.search(buffer) if replica.spec.port is None else None
        if match and replica.process is process and replica.url is None:
            replica.url = match.group(1).decode()
            if replica.state is ProcessState.STARTING:
                replica.state = ProcessState.RUNNING
            replica.announced.set()
            self._emit(
                SupervisorEvent("started", replica.spec.name, process.pid, replica.start_time, replica.url)
            )
            del buffer[:]

    def _reap_and_restart(self) -> None:
        now = time.monotonic()
        events: list[SupervisorEvent] = []
        with self._lock:
            for replica in self._replicas.values():
                process = replica.process
                if replica.state is ProcessState.PARKED:
                    if replica.restart_at is not None and now >= replica.restart_at:
                        if replica.spec.group in self._frozen:
                            continue
                        replica.restart_at = None
                        events.append(SupervisorEvent("launching", replica.spec.name))
                        self._spawn(replica)
                    continue
                if process is None or replica.state is ProcessState.STOPPED:
                    continue
                if process.running():
                    continue
                if replica.state is not ProcessState.DOWN:
                    replica.state = ProcessState.DOWN
                    replica.restart_at = now + replica.spec.restart_delay
                    events.append(
                        SupervisorEvent(
                            "exited", replica.spec.name, process.pid, returncode=process.returncode
                        )
                    )
                if replica.restart_at is not None and now >= replica.restart_at:
                    if replica.spec.group in self._frozen:
                        continue
                    replica.restart_at = None
                    replica.restarts += 1
                    events.append(SupervisorEvent("restarting", replica.spec.name, process.pid))
                    self._spawn(replica)
        for event in events:
            self._emit(event)

    # -- stopping ------------------------------------------------------------------------------

    def stop(self, *, timeout: float = 5.0) -> None:
        """SIGTERM every process (resuming paused ones first), SIGKILL what is left after
        ``timeout``, stop watching, then end the fork server. Calling it again does nothing."""
        if self._stopping.is_set():
            return
        with self._lock:
            replicas = list(self._replicas.values())
            for replica in replicas:
                replica.state = ProcessState.STOPPED
                if replica.process and replica.process.running():
                    replica.process.signal(signal.SIGCONT)
                    replica.process.signal(signal.SIGTERM)
        deadline = time.monotonic() + timeout
        for replica in replicas:
            process = replica.process
            if process is None:
                continue
            if not process.wait(max(0.0, deadline - time.monotonic())):
                process.signal(signal.SIGKILL)
                process.wait(2.0)
            self._emit(SupervisorEvent("stopped", replica.spec.name, process.pid, replica.start_time))
        self._stopping.set()
        self._watcher.join(timeout=2.0)
        for key in list(self._selector.get_map().values()):
            self._selector.unregister(key.fileobj)
        self._selector.close()
        if self._fork_server is not None:
            self._fork_server.stop()
