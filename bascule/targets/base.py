"""What every target shares, and what the runner needs of one.

- `Target`: a started target as the runner drives it — `check` a plan, `prepare`/`apply`/`revert`
  its actions (each a `Transition`), `close` (the faults still in force, reverted), `stop`; the
  entries and store URLs clients use; the fields of its ``target-started`` record and of each
  transition; its own events (`TargetEvent`) reported to a listener.
- `TargetStarter`: what starts one (a registry entry bound to its options, `targets.registry`);
  `StartRequest` is what it is given, `Refusal` what it answers instead of a target.
- `LedgerTarget`: the base both targets share — the lock, the signals held back while something
  changes (`signals_deferred`), the undo recorded first and the bookkeeping of prepared, applied
  and reverted faults; a target says only how to compute, record, carry out and undo a fault.
- `RecordsProcesses`: a target whose undo ledger also keeps the processes the runner starts (the
  load generator's), so that `bascule recover` ends them after a killed run.
- `ClosingTarget`: the context manager that turns SIGTERM into an exit and always closes the
  target — reverting every fault still in force — on the way out.
"""

from __future__ import annotations

import contextlib
import signal
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType, TracebackType
from typing import Any, Generic, Protocol, Self, TypeVar, runtime_checkable

from bascule.errors import FaultError, RevertError, TargetError
from bascule.exit_codes import ExitCode
from bascule.journal.discovered import OutsideReach
from bascule.journal.hops import PathHop
from bascule.journal.traffic import FaultTraffic
from bascule.model.design import Design
from bascule.plan.model import Action, ActionOp, Plan, Touch

__all__ = [
    "ClosingTarget",
    "FaultTraffic",
    "JsonFields",
    "LedgerTarget",
    "RecordsProcesses",
    "Refusal",
    "StartRequest",
    "Target",
    "TargetEvent",
    "TargetStarter",
    "Transition",
    "signals_deferred",
]


@dataclass(frozen=True)
class Transition:
    """One fault put in force or ended, and when."""

    key: str
    """The fault's key on the target: ``<session>/<action key>``."""
    op: ActionOp
    kind: str
    monotonic: float
    """``time.monotonic()`` once the change had taken effect."""
    wall: float
    """``time.time()`` at the same instant."""
    took: float
    """Seconds from the call to the change in force (the ledger's fsync included)."""
    effects: tuple[str, ...]
    """One line per effect: put in force (apply), or ended (revert; a kill or a wipe ends nothing)."""
    changed: bool = True
    traffic: FaultTraffic | None = None
    """At a revert: what reached the fault's routes and names while it was in force; None where
    the target does not count it (a fault on processes only; the Kubernetes target)."""

    def journal_fields(self) -> dict[str, object]:
        """What the ``fault-applied``/``fault-reverted`` record says of the change itself
        (docs/journal.md): its ``effects``, and a revert's ``traffic`` where it was counted."""
        fields: dict[str, object] = {"effects": list(self.effects)}
        if self.traffic is not None:
            fields["traffic"] = self.traffic.to_json()
        return fields


@contextlib.contextmanager
def signals_deferred() -> Iterator[None]:
    """Hold SIGINT and SIGTERM back while the block runs, then deliver them (main thread only;
    elsewhere a no-op, since Python runs signal handlers in the main thread only).

    A handler that notes the signal, rather than a blocked signal mask: a signal sent to the
    process is delivered to any thread that does not block it (the fault plane's, the DNS
    server's), and Python would still run its handler in the main thread in the middle of the block.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    pending: list[int] = []

    def hold(signum: int, frame: FrameType | None) -> None:
        pending.append(signum)

    previous = {signum: signal.signal(signum, hold) for signum in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, signal.SIG_DFL if handler is None else handler)
        for held in pending:
            signal.raise_signal(held)


def _terminate(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(128 + signum)


class ClosingTarget:
    """``with target:`` — SIGTERM becomes ``SystemExit`` (so that the block unwinds), and
    `close` runs on every way out. Subclasses define `close`."""

    _previous_sigterm: Any = None

    def close(self) -> Any:
        raise TypeError(f"{type(self).__name__} must define close()")

    def __enter__(self) -> Self:
        if threading.current_thread() is threading.main_thread():
            self._previous_sigterm = signal.signal(signal.SIGTERM, _terminate)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        try:
            self.close()
        finally:
            if self._previous_sigterm is not None:
                signal.signal(signal.SIGTERM, self._previous_sigterm)
                self._previous_sigterm = None


JsonFields = Mapping[str, Any]
"""Fields of a journal record: JSON-ready values."""


@dataclass(frozen=True)
class TargetEvent:
    """Something the target did on its own (the local stack's scale-up, the API calls made while
    closing): one journal record, and a line for the live view."""

    record: str
    """The journal record's type."""
    fields: JsonFields
    at: float | None = None
    """``time.monotonic()`` of the event (None: when it is journaled)."""
    instants: Mapping[str, float] = field(default_factory=dict)
    """Further fields that are monotonic instants: journaled as seconds of the run."""
    message: str | None = None
    """The live view's line (None: journaled only)."""


@dataclass(frozen=True)
class Refusal:
    """Why a target would not start (or a run not go on): exit 2 unless said otherwise."""

    reason: str
    exit_code: int = ExitCode.INVALID_INPUT
    phases: tuple[str, ...] = ()
    """The plan's phases the target refused, one line each (journaled as ``refused`` records)."""


@dataclass(frozen=True)
class StartRequest:
    """What starting a target for one run is given."""

    design: Design
    design_path: Path
    run_dir: Path
    progress: Callable[[str], None]
    """Where the target says what it is doing (the live view's stage)."""
    otlp_endpoint: str | None = None
    """The run's OTLP/HTTP trace receiver (``http://127.0.0.1:PORT``), when the run receives spans:
    the target hands it to the services it starts (``OTEL_EXPORTER_OTLP_ENDPOINT``, docs/traces.md)
    and says where it cannot."""
    cancel: threading.Event | None = None
    """Set when the run is interrupted: a target that can stops starting (everything it had
    started stopped) and raises `TargetError`; one that cannot returns when started."""
    plan: Plan | None = None
    """The run's plan: a target that can tell from the design alone which phases it cannot carry
    out refuses them before it starts anything (`Refusal.phases`); the runner asks `Target.check`
    again once it has started."""


class Target(Protocol):
    """A started target, as the runner drives it."""

    name: str

    @property
    def entries(self) -> Mapping[str, str]:
        """Region → the URL clients (probes, load) reach its service at."""
        ...

    @property
    def store_urls(self) -> Mapping[str, Sequence[str]]:
        """Region → its stores' URLs, for the canary reads."""
        ...

    def started_record(self) -> JsonFields:
        """The fields of the ``target-started`` record, besides ``target``."""
        ...

    def transition_fields(self) -> JsonFields:
        """Fields added to each ``fault-applied`` and ``fault-reverted`` record: what the target did
        since the last one beyond the transition itself (empty when nothing to say)."""
        ...

    def subscribe(self, listener: Callable[[TargetEvent], None]) -> None:
        """Report the target's own events to `listener` (from any thread)."""
        ...

    def take_hops(self) -> list[PathHop]:
        """The HTTP requests the target saw go from one component to another since the last call,
        placed in the design and keyed by trace id (`bascule.runner.paths`); empty where the target
        relays nothing (its paths then come from OpenTelemetry traces only)."""
        ...

    def take_outside(self) -> list[OutsideReach]:
        """Requests (and name lookups) the stack made to hosts the design does not declare since the
        last call (`bascule.runner.discovered`); empty where the target has no egress of its own."""
        ...

    def check(self, plan: Plan) -> list[str]:
        """Every phase of `plan` this target cannot carry out, each with the reason."""
        ...

    def prepare(self, action: Action, touch: Touch) -> None: ...

    def apply(self, action: Action, touch: Touch) -> Transition: ...

    def revert(self, action: Action, touch: Touch | None = None) -> Transition: ...

    def close(self) -> list[Transition]:
        """Revert every fault still in force; the reverts done."""
        ...

    def stop(self, *, hurry: bool) -> None:
        """Release what the target holds (processes, clients); `hurry` after a second Ctrl-C."""
        ...


@runtime_checkable
class RecordsProcesses(Protocol):
    """A target that keeps the processes the runner starts in its undo ledger (the local target)."""

    def process_environment(self) -> Mapping[str, str]:
        """Variables every such process must carry from its start (the run's marker), so that one
        killed with the run before it was recorded is still found."""
        ...

    def record_process(self, name: str, pid: int, start_time: int) -> None:
        """Record it (fsynced) in the ledger; it is ended before the ledger is closed."""
        ...


class TargetStarter(Protocol):
    """A target chosen by name with its options (`targets.registry.choose`): what the runner starts."""

    @property
    def name(self) -> str: ...

    def start(self, request: StartRequest) -> Target | Refusal: ...


Held = TypeVar("Held")
"""What a fault's undo record holds: its effects (local), its changes with their prior state
(Kubernetes)."""


class LedgerTarget(ClosingTarget, ABC, Generic[Held]):
    """The bookkeeping both targets share: a fault's undo is recorded (fsynced) before it takes
    effect, here or ahead of its instant in `prepare`; every change holds a lock and defers SIGINT
    and SIGTERM, so that an interrupted run never leaves a fault half-applied or unrecorded; `close`
    reverts what is still in force, the most recent first.

    A subclass calls `_start_ledger` and says how a fault is computed (`_compute`), recorded
    (`_record`), carried out (`_carry_out`) and undone (`_undo`), how its end is recorded
    (`_record_reverted`), and what closing ends besides (`_end`)."""

    session: str

    def _start_ledger(self, session: str) -> None:
        self.session = session
        self._active: dict[str, tuple[Action, Held]] = {}
        self._prepared: dict[str, Held] = {}
        self._lock = threading.RLock()
        self._closed = False

    # -- what a target says --

    @abstractmethod
    def _compute(self, action: Action, touch: Touch) -> Held: ...

    @abstractmethod
    def _record(self, key: str, action: Action, held: Held) -> None:
        """Append the fault's undo record to the ledger (fsynced)."""

    @abstractmethod
    def _carry_out(self, key: str, held: Held) -> tuple[str, ...]:
        """Put the fault in force; one line per effect. On failure, undo what was done, record it,
        and raise `FaultError`."""

    @abstractmethod
    def _undo(self, key: str, held: Held) -> tuple[str, ...]:
        """End the fault; one line per effect ended. Raises `RevertError` when a part stays."""

    @abstractmethod
    def _record_reverted(self, key: str, note: str) -> None: ...

    def _took_effect(self, key: str) -> float | None:
        """When an apply that goes on after its fault took effect did (``time.monotonic()``): a
        data-loss stops its replica, then wipes it and restarts it — the fault is in force from the
        stop. None: once the apply returns."""
        return None

    def _traffic(self, key: str, held: Held) -> FaultTraffic | None:
        """What reached the fault's parts while it was in force, asked just before it ends; None
        where the target does not count it. Never raises: a count lost leaves it None."""
        return None

    def _forget(self, key: str, held: Held) -> None:
        """A fault prepared and never applied."""
        self._record_reverted(key, "never applied")

    def _end(self, clean: bool) -> list[str]:
        """What closing ends once the faults are reverted (`clean`: all of them); the problems."""
        return []

    # -- run time --

    def key(self, action: Action) -> str:
        return f"{self.session}/{action.key}"

    def active(self) -> list[str]:
        """The keys of the faults in force, in the order applied."""
        with self._lock:
            return list(self._active)

    @contextlib.contextmanager
    def _changing(self, action: Action, verb: str) -> Iterator[str]:
        """The key of an apply action's fault, the lock held and signals deferred, on an open target."""
        if action.op is not ActionOp.APPLY:
            raise ValueError(f"{verb}() takes an apply action, got {action.op.value}")
        with self._lock, signals_deferred():
            if self._closed:
                raise TargetError("the target is closed")
            yield self.key(action)

    def prepare(self, action: Action, touch: Touch) -> None:
        """Record the fault's undo (fsynced) ahead of its instant, so that `apply` then only acts:
        the disk's latency stays off the fault's activation. A fault prepared and never applied is
        recorded as such when reverted or at `close`."""
        with self._changing(action, "prepare") as key:
            if key in self._active or key in self._prepared:
                return
            held = self._compute(action, touch)
            self._record(key, action, held)
            self._prepared[key] = held

    def apply(self, action: Action, touch: Touch) -> Transition:
        """Put the fault in force, its undo recorded first — here, unless `prepare` did. Raises
        `FaultError` when it cannot be carried out (what was done of it is undone and recorded)."""
        called = time.monotonic()
        with self._changing(action, "apply") as key:
            if key in self._active:
                raise FaultError(f"fault {key!r} is already applied")
            held = self._prepared.pop(key, None)
            if held is None:
                held = self._compute(action, touch)
                self._record(key, action, held)
            lines = self._carry_out(key, held)
            self._active[key] = (action, held)
            done, wall = time.monotonic(), time.time()
            began = self._took_effect(key)
            if began is not None and called <= began < done:  # a process stopped, then more work
                done, wall = began, wall - (done - began)
        return Transition(key, ActionOp.APPLY, action.fault.kind, done, wall, done - called, lines)

    def revert(self, action: Action, touch: Touch | None = None) -> Transition:
        """End the fault `action` names (its apply or its revert action); one not in force is left
        alone (``changed`` is False). Raises `RevertError` if a part could not be restored: the
        fault then stays in the ledger for `bascule recover`."""
        called = time.monotonic()
        key = self.key(action)
        with self._lock, signals_deferred():
            entry = self._active.get(key)
            if entry is None:
                prepared = self._prepared.pop(key, None)
                if prepared is not None:
                    self._forget(key, prepared)
                now = time.monotonic()
                return Transition(
                    key, ActionOp.REVERT, action.fault.kind, now, time.time(), now - called, (), False
                )
            return self._revert_locked(key, called, note="")

    def _revert_locked(self, key: str, called: float, note: str) -> Transition:
        action, held = self._active[key]
        traffic = self._traffic(key, held)
        lines = self._undo(key, held)
        self._record_reverted(key, note)
        del self._active[key]
        done, wall = time.monotonic(), time.time()
        return Transition(
            key, ActionOp.REVERT, action.fault.kind, done, wall, done - called, lines, traffic=traffic
        )

    def close(self) -> list[Transition]:
        """Revert every fault still in force (most recent first), then end the rest (`_end`); the
        reverts done. Idempotent. Raises `RevertError` at the end if something could not be
        reverted — after everything else was done."""
        reverted: list[Transition] = []
        with self._lock, signals_deferred():
            if self._closed:
                return reverted
            self._closed = True
            errors: list[str] = []
            for key in reversed(list(self._active)):
                try:
                    reverted.append(self._revert_locked(key, time.monotonic(), note="closing"))
                except (RevertError, OSError) as exc:
                    errors.append(str(exc))
            for key, held in list(self._prepared.items()):
                try:
                    self._forget(key, held)
                except OSError as exc:
                    errors.append(str(exc))
                del self._prepared[key]
            errors += self._end(clean=not errors)
        if errors:
            raise RevertError("; ".join(errors))
        return reverted
