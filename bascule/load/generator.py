"""Load generation for a run: locust, driven as subprocesses, its samples streamed back.

locust monkey-patches the standard library when it is imported, so it never runs in bascule's
process: `LoadGenerator` starts ``python -m locust -f bascule/load/locustfile.py`` — one
standalone process, or a master and N workers — and reads the `RequestSample` JSON lines each of
them appends to its stream file, incrementally, while the load runs. See docs/load.md.

What the locust processes do is decided by the pure modules the locustfile imports: `schedule`
(their configuration, the users over time) and `mix` (the requests and their samples)."""

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
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import IO, Final

from bascule.errors import TargetError
from bascule.journal.samples import RequestSample, sample_from_json
from bascule.load.schedule import (
    CONFIG_ENV,
    MASTER_INFO_ENV,
    MASTER_WAIT_ENV,
    STARTUP_TIMEOUT,
    STREAM_ENV,
    LoadConfig,
    LoadSchedule,
    compute_schedule,
)
from bascule.model.scenario import Load
from bascule.stack.supervisor import process_start_time

__all__ = ["LOCUSTFILE", "STOP_GRACE", "LoadGenerator", "LoadProcess"]

LOCUSTFILE: Final = Path(__file__).with_name("locustfile.py")
STOP_GRACE: Final = 10.0
"""Seconds past ``--run-time`` before the generator kills whatever still runs."""

_READ_BUDGET = 1 << 20
_MAX_LINE = 1 << 20


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
        environment: Mapping[str, str] | None = None,
    ) -> LoadGenerator:
        """Start locust against ``entries`` (region → gateway entry URL) for ``duration`` seconds
        from ``origin`` (``time.monotonic()``; default now), the shape computed from ``load``.

        Without workers, one standalone process. With ``workers`` and/or ``remote_workers``, a
        master bound to ``master_bind``:``master_port`` (0: any free port, see `master_port`)
        that waits up to ``startup_timeout`` for ``workers`` local worker processes plus
        ``remote_workers`` attached from elsewhere (docs/load.md). ``on_process`` sees each
        process as soon as it exists, before the next one starts (for the undo ledger); every
        process carries ``environment`` (the run's marker) from its start.

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
        env = {**_environment(config), **(environment or {})}
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
