"""How the supervisor starts a process and keeps a handle on it: cold, a fresh interpreter per
process (`ColdProcess`, `subprocess.Popen`), or forked from the run's fork server
(`ForkServer`, `ForkedProcess`; the server itself is `bascule.stack.forkserver`).

Both handles answer the same questions (`ProcessHandle`): the PID, the pipe its announce line comes
on, whether it is still running, its exit code, and a signal to its process group that can never
reach another process — a handle signals only while the process has not been reaped, so its PID
cannot have been reused.

The fork server is used for the reference stack's own services (``python -m bascule.stack.<kind>``)
when fork is safe and available here (`fork_refusal`); a process of any other command (an own
service) always starts cold, and ``BASCULE_FORK_SERVER=0`` makes every process start cold.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import select
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import IO, Any, Final, Protocol

from bascule.stack.forkserver import MAX_MESSAGE

__all__ = [
    "FORK_SERVER_ENV",
    "STACK_MODULES",
    "ColdProcess",
    "ForkServer",
    "ForkServerError",
    "ForkedProcess",
    "ProcessHandle",
    "fork_refusal",
]

FORK_SERVER_ENV: Final = "BASCULE_FORK_SERVER"
"""``0`` (or ``false``, ``no``, ``off``): start every process cold, as before the fork server."""

STACK_MODULES: Final = (
    "bascule.stack.gateway",
    "bascule.stack.retriever",
    "bascule.stack.store",
    "bascule.stack.llm",
    "bascule.stack.identity",
)
"""What the fork server imports: every service the reference stack runs (`layout.ProcessKind`)."""

SINGLE_THREADED: Final = {
    "OPENBLAS_NUM_THREADS": "1",
    "OMP_NUM_THREADS": "1",
    "MKL_NUM_THREADS": "1",
    "NUMEXPR_NUM_THREADS": "1",
}
"""No BLAS thread pool in the fork server: a thread does not survive a fork."""

_READY_TIMEOUT_S = 60.0
_REPLY_TIMEOUT_S = 30.0

_log = logging.getLogger(__name__)


class ForkServerError(Exception):
    """The fork server cannot fork this process (or any more): start it cold."""


def fork_refusal(environ: Mapping[str, str] | None = None) -> str | None:
    """Why processes cannot be forked from a fork server here, or ``None`` when they can."""
    env = os.environ if environ is None else environ
    if env.get(FORK_SERVER_ENV, "").strip().lower() in ("0", "false", "no", "off"):
        return f"{FORK_SERVER_ENV}={env[FORK_SERVER_ENV]}"
    if not sys.platform.startswith("linux"):
        return f"fork server on Linux only (this is {sys.platform})"
    missing = [
        name
        for module, name in ((os, "fork"), (os, "pidfd_open"), (os, "waitid"), (socket, "send_fds"))
        if not hasattr(module, name)
    ]
    if missing:
        return f"this Python lacks {', '.join(missing)}"
    return None


class ProcessHandle(Protocol):
    """A process the supervisor started, however it was started."""

    @property
    def pid(self) -> int: ...

    @property
    def stdout(self) -> IO[bytes]:
        """Where its announce line comes from (non-blocking; the supervisor reads and closes it)."""

    @property
    def returncode(self) -> int | None:
        """Its exit code once it has exited (``-N``: killed by signal N); ``None`` while it runs, or
        when its exit code was lost (its fork server died before it)."""

    def running(self) -> bool: ...

    def wait(self, timeout: float) -> bool:
        """Wait until it has exited, at most `timeout` seconds; True when it has."""

    def signal(self, sig: signal.Signals) -> None:
        """Signal its process group while it runs; nothing once it has exited."""


class ColdProcess:
    """A fresh interpreter: `subprocess.Popen`, in a session of its own."""

    def __init__(self, popen: subprocess.Popen[bytes]) -> None:
        assert popen.stdout is not None
        self._popen = popen
        self._stdout: IO[bytes] = popen.stdout
        self._lock = threading.Lock()

    @classmethod
    def start(
        cls, argv: Sequence[str], env: Mapping[str, str], cwd: str | None, log: IO[bytes]
    ) -> ColdProcess:
        popen = subprocess.Popen(
            list(argv),
            stdout=subprocess.PIPE,
            stderr=log,
            stdin=subprocess.DEVNULL,
            env=dict(env),
            cwd=cwd,
            start_new_session=True,
        )
        return cls(popen)

    @property
    def pid(self) -> int:
        return self._popen.pid

    @property
    def stdout(self) -> IO[bytes]:
        return self._stdout

    @property
    def returncode(self) -> int | None:
        return self._popen.returncode

    def running(self) -> bool:
        with self._lock:
            return self._popen.poll() is None

    def wait(self, timeout: float) -> bool:
        try:
            self._popen.wait(timeout)
        except subprocess.TimeoutExpired:
            return False
        return True

    def signal(self, sig: signal.Signals) -> None:
        # Popen reaps only in poll/wait, under this lock: while poll says it runs, the PID is its.
        with self._lock:
            if self._popen.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self._popen.pid, sig)


class ForkedProcess:
    """A child of the fork server. Its exit comes over the server's channel; until this process has
    seen it, the server does not reap it, so its PID is not reused. Should the server die first,
    a pidfd still says whether it runs (its exit code is then lost)."""

    def __init__(self, pid: int, stdout: IO[bytes], server: ForkServer) -> None:
        self._pid = pid
        self._stdout = stdout
        self._server = server
        self._lock = threading.Lock()
        self._exited = threading.Event()
        self._code: int | None = None
        try:
            self._pidfd: int | None = os.pidfd_open(pid)
        except OSError:
            self._pidfd = None  # already reaped: its exit report is on its way

    @property
    def pid(self) -> int:
        return self._pid

    @property
    def stdout(self) -> IO[bytes]:
        return self._stdout

    @property
    def returncode(self) -> int | None:
        return self._code

    def _on_exit(self, code: int | None) -> None:
        with self._lock:
            self._code = code
            self._exited.set()
            if self._pidfd is not None:
                os.close(self._pidfd)
                self._pidfd = None

    def _orphaned(self) -> bool:
        """True when the server is gone and the pidfd says this process is gone too."""
        if self._exited.is_set() or self._server.alive:
            return self._exited.is_set()
        with self._lock:
            gone = self._pidfd is None or bool(select.select([self._pidfd], [], [], 0)[0])
        if gone:
            self._on_exit(None)
        return gone

    def running(self) -> bool:
        return not self._orphaned()

    def wait(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while self._server.alive and not self._exited.is_set():
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            self._exited.wait(min(left, 0.1))
        if self._exited.is_set():
            return True
        timeout = max(0.0, deadline - time.monotonic())
        with self._lock:
            fd = self._pidfd
            if fd is not None:
                select.select([fd], [], [], timeout)
        return self._orphaned()

    def signal(self, sig: signal.Signals) -> None:
        with self._lock:
            if self._exited.is_set():
                return
            if self._server.alive:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self._pid, sig)
            elif self._pidfd is not None:
                # Reaped by init whenever it exits: only the pidfd names it for sure.
                with contextlib.suppress(ProcessLookupError):
                    signal.pidfd_send_signal(self._pidfd, sig)


class ForkServer:
    """The client side of a fork server (`bascule.stack.forkserver`) — one run's, or one lent to
    every run of a command (`bascule.targets.local.shared`): started at once, its imports go on
    while the caller does other things; the first `spawn` waits for them."""

    def __init__(self, popen: subprocess.Popen[bytes], control: socket.socket, log_path: Path) -> None:
        self._popen = popen
        self._control = control
        self.log_path = log_path
        self._send_lock = threading.Lock()
        self._state = threading.Condition()
        self._ready: bool | None = None
        self.refusal: str | None = None
        """Why it forks nothing (set once it has said so, or died)."""
        self.modules: frozenset[str] = frozenset()
        self._next = 0
        self._replies: dict[int, dict[str, Any]] = {}
        self._children: dict[int, ForkedProcess] = {}
        self._early_exits: dict[int, int] = {}
        self._alive = True
        self._reader = threading.Thread(target=self._read, name="bascule-fork-server", daemon=True)
        self._reader.start()

    @classmethod
    def start(
        cls, log_path: Path, *, env: Mapping[str, str] | None = None, modules: Sequence[str] = STACK_MODULES
    ) -> ForkServer:
        """Start the fork server, its log at `log_path`, `env` added to this process's environment."""
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        log_path.parent.mkdir(parents=True, exist_ok=True)
        environment = {**os.environ, **(env or {}), **SINGLE_THREADED, "PYTHONUNBUFFERED": "1"}
        try:
            with log_path.open("ab") as log:
                popen = subprocess.Popen(
                    [sys.executable, "-m", "bascule.stack.forkserver", str(theirs.fileno()), *modules],
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=log,
                    env=environment,
                    pass_fds=(theirs.fileno(),),
                    start_new_session=True,
                )
        except OSError:
            ours.close()
            raise
        finally:
            theirs.close()
        return cls(popen, ours, log_path)

    @property
    def pid(self) -> int:
        return self._popen.pid

    @property
    def alive(self) -> bool:
        return self._alive

    def serves(self, argv: Sequence[str]) -> bool:
        """Whether `argv` runs a module this server may have imported (``python -m MODULE``)."""
        return len(argv) >= 3 and argv[0] == sys.executable and argv[1] == "-m" and argv[2] in STACK_MODULES

    def wait_ready(self, timeout: float = _READY_TIMEOUT_S) -> bool:
        """Wait for its imports; True when it forks (else `refusal` says why not)."""
        with self._state:
            self._state.wait_for(lambda: self._ready is not None, timeout)
            if self._ready is None:
                self.refusal = f"the fork server did not finish its imports within {timeout:g} s"
                self._ready = False
            return self._ready

    def spawn(
        self, argv: Sequence[str], env: Mapping[str, str], cwd: str | None, log: IO[bytes]
    ) -> ForkedProcess:
        """Fork ``python -m MODULE ARGS`` (`argv`) with `env` as its whole environment, in `cwd`,
        its stderr to `log`. Raises `ForkServerError` when this server cannot."""
        if not self.wait_ready():
            raise ForkServerError(self.refusal or "the fork server refused")
        if argv[2] not in self.modules:
            raise ForkServerError(f"the fork server did not import {argv[2]}")
        read_end, write_end = os.pipe()
        with self._state:
            self._next += 1
            ident = self._next
        request = {
            "spawn": ident,
            "module": argv[2],
            "argv": list(argv[3:]),
            "env": dict(env),
            "cwd": cwd or os.getcwd(),
        }
        try:
            data = json.dumps(request).encode()
            if len(data) > MAX_MESSAGE:
                raise ForkServerError("the environment is too large for the fork server's channel")
            with self._send_lock:
                socket.send_fds(self._control, [data], [write_end, log.fileno()])
        except OSError as exc:
            os.close(read_end)
            raise ForkServerError(f"the fork server's channel is closed: {exc}") from exc
        finally:
            os.close(write_end)
        with self._state:
            done = self._state.wait_for(lambda: ident in self._replies or not self._alive, _REPLY_TIMEOUT_S)
            reply = self._replies.pop(ident, None)
            if not done or reply is None or "pid" not in reply:
                os.close(read_end)
                why = "it did not answer" if reply is None else reply.get("error", "no PID")
                raise ForkServerError(f"the fork server did not fork {argv[2]}: {why}")
            pid = int(reply["pid"])
            os.set_blocking(read_end, False)
            process = ForkedProcess(pid, open(read_end, "rb", buffering=0), self)  # noqa: SIM115
            self._children[pid] = process
            early = self._early_exits.pop(pid, None)
        if early is not None:
            self._exited(pid, early)
        return process

    def _send(self, message: dict[str, Any]) -> None:
        with contextlib.suppress(OSError), self._send_lock:
            self._control.send(json.dumps(message).encode())

    def _exited(self, pid: int, code: int) -> None:
        with self._state:
            process = self._children.pop(pid, None)
            if process is None:  # its exit came before our record of its spawn
                self._early_exits[pid] = code
                return
        process._on_exit(code)
        self._send({"reap": pid})

    def _read(self) -> None:
        while True:
            try:
                data = self._control.recv(MAX_MESSAGE)
            except OSError:
                data = b""
            if not data:
                break
            message = json.loads(data)
            if "exit" in message:
                self._exited(int(message["exit"]), int(message["code"]))
                continue
            with self._state:
                if "ready" in message:
                    self.modules = frozenset(message["ready"])
                    self.refusal = message.get("refusal")
                    self._ready = self.refusal is None
                elif "spawn" in message:
                    self._replies[int(message["spawn"])] = message
                self._state.notify_all()
        with self._state:
            self._alive = False
            if self._ready is None:
                self._ready = False
                self.refusal = f"the fork server exited before its imports were done (see {self.log_path})"
            self._state.notify_all()

    def stop(self, timeout: float = 2.0) -> None:
        """End the server (its children are the supervisor's to stop, before this)."""
        with contextlib.suppress(OSError):
            self._control.shutdown(socket.SHUT_RDWR)
        try:
            self._popen.wait(timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self._popen.pid, signal.SIGKILL)
            self._popen.wait(timeout)
        self._reader.join(timeout)
        self._control.close()
        if self._alive:
            _log.warning("the fork server's channel did not close")
