"""`bascule inject KIND --target … --for 30s`: one fault, by hand, on a running `bascule stack up`.

For game days driven from a terminal: the fault is resolved against the running stack's design as
a scenario phase would be (`bascule.plan.resolve`), refused with the reason if this stack cannot
carry it out, applied through the stack's control channel (`LocalTarget.connect`) with its undo
recorded in the run's ledger first, held for the duration — or until Ctrl-C or SIGTERM — and
reverted, whatever ends the wait. A ``flap`` switches its inner fault on and off on its period and
duty cycle (in real time: nothing is compressed here) until the end.

If this process is killed outright, the stack keeps the fault: `bascule recover RUN_DIR` reverts
it, since the ledger names this process as the fault's owner and the owner is gone.
"""

from __future__ import annotations

import math
import signal
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from types import FrameType

from bascule.errors import FaultError, PlanError, Problem, RevertError
from bascule.faults import Fault, Flap
from bascule.model.selector import Selector
from bascule.plan.model import Action, ActionOp, Touch
from bascule.plan.resolve import resolve
from bascule.targets.base import Transition
from bascule.targets.local.ledger import LEDGER_FILE, read_ledger
from bascule.targets.local.target import LocalTarget

__all__ = ["InjectEvent", "InjectEventKind", "InjectReport", "inject"]

_TICK_S = 0.2


class InjectEventKind(StrEnum):
    PLANNED = "planned"
    """The fault was resolved; ``message`` says what it touches."""
    APPLIED = "applied"
    REVERTED = "reverted"
    INTERRUPTED = "interrupted"
    """Ctrl-C or SIGTERM: the fault is being reverted now."""
    NOTE = "note"


@dataclass(frozen=True)
class InjectEvent:
    kind: InjectEventKind
    message: str
    monotonic: float
    transition: Transition | None = None


@dataclass(frozen=True)
class InjectReport:
    kind: str
    selector: str
    touch: Touch
    transitions: tuple[Transition, ...]
    interrupted: bool
    duration: float | None
    """As asked (None: until interrupted)."""
    held: float
    """Seconds from the first apply to the last revert."""


class _Interrupted(BaseException):
    """SIGINT or SIGTERM while waiting (a fault's change itself defers them: `signals_deferred`)."""


def _on_signal(signum: int, frame: FrameType | None) -> None:
    # Once: a second signal must not cut the revert short (it is done in milliseconds anyway).
    for s in _SIGNALS:
        signal.signal(s, signal.SIG_IGN)
    raise _Interrupted


_SIGNALS = (signal.SIGINT, signal.SIGTERM)


def _windows(fault: Fault, duration: float | None) -> Iterator[tuple[int | None, float, float]]:
    """(cycle, on, off) in seconds from the start — the planner's flap windows at scale 1."""
    end = math.inf if duration is None else duration
    if not isinstance(fault, Flap):
        yield None, 0.0, end
        return
    period = max(fault.period, fault.min_period)
    cycle = 0
    while cycle * period < end - 1e-6:
        on = cycle * period
        yield cycle, on, min(on + period * fault.duty, end)
        cycle += 1


class _StackGoneError(Exception):
    """The stack the fault was injected into has stopped: its faults ended with it."""


def _stack_gone(run_dir: Path) -> bool:
    state = read_ledger(run_dir / LEDGER_FILE)
    return state.finished or (state.run is not None and not state.run.owner.alive())


def _wait_until(deadline: float, cancel: threading.Event | None, run_dir: Path) -> None:
    """Sleep until `deadline`; raises `_Interrupted` when `cancel` is set, `_StackGoneError` when the
    stack has stopped meanwhile (looked at once a second)."""
    looked = time.monotonic()
    while (left := deadline - time.monotonic()) > 0:
        if cancel is None:
            time.sleep(min(left, _TICK_S))
        elif cancel.wait(min(left, _TICK_S)):
            raise _Interrupted
        if time.monotonic() - looked >= 1.0:
            looked = time.monotonic()
            if _stack_gone(run_dir):
                raise _StackGoneError


def _touched(touch: Touch) -> str:
    parts = [
        f"{len(touch.replicas)} process(es)" if touch.replicas else "",
        f"{len(touch.hops)} hop(s)" if touch.hops else "",
        f"{len(touch.hosts)} name(s)" if touch.hosts else "",
        f"regions {', '.join(touch.regions)}" if touch.regions else "",
    ]
    return ", ".join(p for p in parts if p) or "nothing"


def inject(
    run_dir: Path,
    fault: Fault,
    selector: Selector,
    duration: float | None = None,
    *,
    on_event: Callable[[InjectEvent], None] | None = None,
    cancel: threading.Event | None = None,
) -> InjectReport:
    """Apply `fault` on `selector` to the stack running in `run_dir`, hold it for `duration`
    seconds (None: until Ctrl-C or SIGTERM, or `cancel` is set), and revert it — always. Setting
    `cancel` ends the wait as a signal does (the report says `interrupted`): the game-day page's
    revert and abort buttons, where the injection runs in a thread of `bascule stack up --web`.

    Raises `PlanError` when the selector does not fit the design, `FaultError` when the fault
    touches nothing or this stack cannot carry it out, `TargetError` when no stack with a control
    channel runs there, `RevertError` when a revert failed (the ledger keeps the fault for
    `bascule recover`).
    """
    if duration is not None and not (math.isfinite(duration) and duration > 0):
        raise ValueError(f"duration must be a number of seconds above 0, got {duration!r}")
    emit = on_event or (lambda _: None)
    target = LocalTarget.connect(run_dir)
    inner = fault.fault if isinstance(fault, Flap) else fault
    transitions: list[Transition] = []
    interrupted = False
    previous: dict[int, object] = {}
    in_main = threading.current_thread() is threading.main_thread()
    try:
        touch, problems = resolve(target.design, fault, selector, ("inject",))
        if problems:
            raise PlanError(Problem(message, path) for path, message in problems)
        if touch.empty:
            raise FaultError(f"{selector.describe()} selects nothing in design {target.design.id!r}")
        refusal = target.refusal(fault, touch)
        if refusal is not None:
            raise FaultError(refusal)
        emit(InjectEvent(InjectEventKind.PLANNED, f"{fault.kind} on {_touched(touch)}", time.monotonic()))
        if in_main:  # its own handlers: an inherited ignored SIGINT must not make Ctrl-C do nothing
            previous = {s: signal.signal(s, _on_signal) for s in _SIGNALS}
        start = time.monotonic()
        try:
            for cycle, on, off in _windows(fault, duration):
                _wait_until(start + on, cancel, run_dir)
                action = Action(on, ActionOp.APPLY, 0, inner, cycle)
                moved = target.apply(action, touch)
                transitions.append(moved)
                emit(InjectEvent(InjectEventKind.APPLIED, "; ".join(moved.effects), moved.monotonic, moved))
                if isinstance(fault, Flap) or duration is not None or target.holds_anything(action):
                    _wait_until(start + off, cancel, run_dir)
                else:
                    note = f"{fault.kind} acts once: nothing to hold"
                    emit(InjectEvent(InjectEventKind.NOTE, note, time.monotonic()))
                moved = target.revert(action)
                transitions.append(moved)
                emit(InjectEvent(InjectEventKind.REVERTED, moved.key, moved.monotonic, moved))
        except (KeyboardInterrupt, _Interrupted):
            interrupted = True
            emit(InjectEvent(InjectEventKind.INTERRUPTED, "reverting now", time.monotonic()))
        except _StackGoneError:
            pass  # `_close` says so: its faults ended with it
    finally:
        try:
            _close(target, run_dir, transitions, emit)
        finally:
            for s, handler in previous.items():
                signal.signal(s, signal.SIG_DFL if handler is None else handler)  # type: ignore[arg-type]
    applied = [t for t in transitions if t.op is ActionOp.APPLY]
    reverted = [t for t in transitions if t.op is ActionOp.REVERT]
    held = (reverted[-1].monotonic - applied[0].monotonic) if applied and reverted else 0.0
    return InjectReport(
        fault.kind, selector.describe(), touch, tuple(transitions), interrupted, duration, held
    )


def _close(
    target: LocalTarget,
    run_dir: Path,
    transitions: list[Transition],
    emit: Callable[[InjectEvent], None],
) -> None:
    """Revert what is still in force. If the stack itself has ended meanwhile, its faults ended
    with it: that is not a failure to revert."""
    try:
        reverted = target.close()
    except RevertError:
        if not _stack_gone(run_dir):
            raise
        emit(
            InjectEvent(InjectEventKind.NOTE, "the stack stopped; its faults ended with it", time.monotonic())
        )
        return
    for moved in reverted:
        transitions.append(moved)
        emit(InjectEvent(InjectEventKind.REVERTED, moved.key, moved.monotonic, moved))
