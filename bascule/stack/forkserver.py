"""The fork server: one process that imports the reference stack's services once, then forks each
replica on request, so that a stack of eleven services costs one interpreter start and one import
instead of eleven (docs/performance.md, "Per-run overhead").

Run as ``python -m bascule.stack.forkserver FD MODULE...`` by `bascule.stack.spawn.ForkServer`,
with ``FD`` one end of an ``AF_UNIX`` ``SOCK_SEQPACKET`` socket pair: its control channel, one JSON
object per message. It imports every ``MODULE`` (a package's ``__main__``, as ``python -m`` runs
it) and nothing more: no thread, event loop, app or client exists before a fork — the server says
so (``{"ready": [...], "refusal": null}``), or says why it will not fork (``"refusal"``: more than
one thread after the imports) and exits. Then, per message:

- ``{"spawn": ID, "module": M, "argv": [...], "env": {...}, "cwd": DIR}`` with two descriptors
  (the write end of the announce pipe, the log file): fork; the child runs `_child` — ``setsid()``
  (a session and process group of its own), stdin from ``/dev/null``, stdout to the pipe, stderr to
  the log, every other descriptor closed, the environment replaced by ``env``, ``cwd``, then ``M``'s
  ``main(argv)`` — and exits with what ``python -m M`` would have. The server answers
  ``{"spawn": ID, "pid": PID}`` once the child has its own session (or has died);
- a child's exit is answered ``{"exit": PID, "code": C}`` (``-N`` for signal N, as
  `subprocess.Popen` says it), but the child is left a zombie — its PID cannot be reused — until
  ``{"reap": PID}`` comes back: the supervisor signals a process group only while it knows the
  process has not been reaped;
- the end of the channel (the run — or the command whose runs share this server — ended, or
  died) ends the server; its children live on, as
  `subprocess.Popen`'s do, for the supervisor to stop or for `bascule recover` to find.
"""

from __future__ import annotations

import atexit
import contextlib
import gc
import importlib
import json
import os
import selectors
import signal
import socket
import sys
import threading
import traceback
from collections.abc import Callable, Sequence
from typing import Any, Final, NoReturn

__all__ = ["ALSO", "MAX_MESSAGE", "main"]

MAX_MESSAGE = 1 << 20
"""The largest control message (a spawn request carries a whole environment)."""

Main = Callable[[Sequence[str]], object]

ALSO: Final = (
    "uvloop",
    "uvicorn.loops.uvloop",
    "uvicorn.loops.asyncio",
    "uvicorn.protocols.http.httptools_impl",
    "uvicorn.protocols.http.h11_impl",
    "uvicorn.protocols.websockets.wsproto_impl",
    "uvicorn.protocols.websockets.websockets_impl",
    "uvicorn.lifespan.on",
)
"""What a service imports only once it serves (uvicorn picks its loop and protocols then; seen with
``python -X importtime``): imported too when installed, so that no child imports them again."""


def _load(modules: Sequence[str]) -> dict[str, tuple[Main, str]]:
    """Each module's ``main`` and the file ``python -m`` would have named in ``sys.argv[0]``."""
    mains: dict[str, tuple[Main, str]] = {}
    for name in modules:
        module = importlib.import_module(name)
        if hasattr(module, "__path__"):
            module = importlib.import_module(f"{name}.__main__")
        mains[name] = (module.main, str(module.__file__))
    for name in ALSO:
        with contextlib.suppress(ImportError):
            importlib.import_module(name)
    return mains


def _refusal() -> str | None:
    """Why forking now would copy a thread's state into every child, or ``None``."""
    try:
        tasks = len(os.listdir("/proc/self/task"))
    except OSError:
        tasks = threading.active_count()
    if tasks > 1 or threading.active_count() > 1:
        return f"{tasks} threads after importing the services: forking would be unsafe"
    return None


def _exit_code(exc: SystemExit) -> int:
    if exc.code is None:
        return 0
    if isinstance(exc.code, int):
        return exc.code
    print(exc.code, file=sys.stderr)
    return 1


def _run(main: Main, argv: Sequence[str]) -> int:
    """Run ``main`` as the interpreter would run it: its exit code, a traceback on stderr."""
    try:
        main(argv)
        code = 0
    except SystemExit as exc:
        code = _exit_code(exc)
    except KeyboardInterrupt:
        # As CPython does: die of the signal, so that the parent sees -SIGINT.
        atexit._run_exitfuncs()
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        os.kill(os.getpid(), signal.SIGINT)
        code = 1
    except BaseException:
        traceback.print_exc()
        code = 1
    atexit._run_exitfuncs()
    return code


def _child(request: dict[str, Any], stdout: int, log: int, ready: int, main: Main, path: str) -> NoReturn:
    code = 1
    try:
        os.setsid()
        os.close(ready)  # the server answers with our PID once we lead a session of our own
        signal.set_wakeup_fd(-1)
        for sig in (signal.SIGCHLD, signal.SIGTERM, signal.SIGHUP):
            signal.signal(sig, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.default_int_handler)
        null = os.open(os.devnull, os.O_RDONLY)
        os.dup2(null, 0)
        os.dup2(stdout, 1)
        os.dup2(log, 2)
        os.closerange(3, os.sysconf("SC_OPEN_MAX"))
        os.environ.clear()
        os.environ.update(request["env"])
        os.chdir(request["cwd"])
        argv = [str(a) for a in request["argv"]]
        sys.argv = [path, *argv]
        code = _run(main, argv)
    except BaseException:
        with contextlib.suppress(BaseException):
            traceback.print_exc()
    finally:
        with contextlib.suppress(BaseException):
            sys.stdout.flush()
            sys.stderr.flush()
        os._exit(code)


class _Server:
    def __init__(self, control: socket.socket, mains: dict[str, tuple[Main, str]]) -> None:
        self._control = control
        self._mains = mains
        self._children: set[int] = set()
        self._reported: set[int] = set()

    def _send(self, message: dict[str, Any]) -> None:
        self._control.send(json.dumps(message).encode())

    def serve(self) -> None:
        wake_r, wake_w = socket.socketpair()
        wake_r.setblocking(False)
        wake_w.setblocking(False)
        signal.set_wakeup_fd(wake_w.fileno(), warn_on_full_buffer=False)
        signal.signal(signal.SIGCHLD, lambda *_: None)
        with selectors.DefaultSelector() as selector:
            selector.register(self._control, selectors.EVENT_READ, "control")
            selector.register(wake_r, selectors.EVENT_READ, "wake")
            while True:
                for key, _ in selector.select():
                    if key.data == "wake":
                        with contextlib.suppress(BlockingIOError):
                            wake_r.recv(4096)
                    elif not self._handle():
                        return
                self._report_exits()

    def _handle(self) -> bool:
        """Act on one control message; False when the channel has ended."""
        try:
            data, fds, flags, _ = socket.recv_fds(self._control, MAX_MESSAGE, 2)
        except OSError:
            return False
        if not data:
            return False
        try:
            if flags & socket.MSG_TRUNC:
                raise ValueError("message too long")
            request = json.loads(data)
            if "reap" in request:
                pid = int(request["reap"])
                if pid in self._reported:
                    self._reported.discard(pid)
                    self._children.discard(pid)
                    with contextlib.suppress(ChildProcessError):
                        os.waitpid(pid, 0)
            elif "spawn" in request:
                self._spawn(request, fds)
        finally:
            for fd in fds:
                os.close(fd)
        return True

    def _spawn(self, request: dict[str, Any], fds: list[int]) -> None:
        ident = request["spawn"]
        target = self._mains.get(request.get("module", ""))
        if target is None or len(fds) != 2:
            self._send({"spawn": ident, "error": f"cannot fork {request.get('module')!r} here"})
            return
        ready_r, ready_w = os.pipe()
        sys.stdout.flush()
        sys.stderr.flush()
        try:
            pid = os.fork()
        except OSError as exc:
            os.close(ready_r)
            os.close(ready_w)
            self._send({"spawn": ident, "error": f"fork failed: {exc}"})
            return
        if pid == 0:
            os.close(ready_r)
            _child(request, fds[0], fds[1], ready_w, *target)
        os.close(ready_w)
        try:
            os.read(ready_r, 1)  # end of file: the child has its session, or is dead
        finally:
            os.close(ready_r)
        self._children.add(pid)
        self._send({"spawn": ident, "pid": pid})

    def _report_exits(self) -> None:
        for pid in sorted(self._children - self._reported):
            try:
                # WNOWAIT: known to have exited, not reaped — its PID stays taken until "reap".
                info = os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT)
            except ChildProcessError:
                self._children.discard(pid)
                continue
            if info is None:
                continue
            code = info.si_status if info.si_code == os.CLD_EXITED else -info.si_status
            self._reported.add(pid)
            self._send({"exit": pid, "code": code})


def main(argv: Sequence[str] | None = None) -> None:
    args = list(sys.argv[1:] if argv is None else argv)
    control = socket.socket(fileno=int(args[0]))
    try:
        mains = _load(args[1:])
        refusal = _refusal()
    except Exception as exc:  # an import that fails here fails in a cold start too: say it there
        traceback.print_exc()
        mains, refusal = {}, f"importing the services failed: {exc!r}"
    control.send(json.dumps({"ready": sorted(mains), "refusal": refusal}).encode())
    if refusal is not None:
        return
    # Objects made by the imports are never collected in a child: its pages stay shared.
    gc.freeze()
    _Server(control, mains).serve()


if __name__ == "__main__":
    main()
