"""The local target: a plan's actions carried out on a `LocalStack`, every undo on disk first.

    stack = LocalStack.start(design, design_path, run_dir)
    with LocalTarget(stack) as target:          # close() on every exit path, SIGTERM included
        refusals = target.check(plan)            # kinds this stack cannot carry out, with reasons
                                                 # (check_plan(plan, design): the same, before start)
        for action in plan.actions:              # (the runner waits for action.offset)
            touch = plan.phases[action.phase].touch
            # (ahead of the instant: target.prepare(action, touch) for apply actions)
            moved = target.apply(action, touch) if action.op is ActionOp.APPLY else target.revert(action)
            journal(moved.monotonic, moved.wall)  # when the fault was actually in force / gone

`apply` computes the fault's effects (`effects.compute_effects`), appends its undo record to the
ledger and fsyncs it, and only then puts the effects in force on the stack's `FaultBoard`, which
keeps overlapping faults right. A disk's fsync can take several milliseconds now and then, so a
runner that wants the fault in force at its instant calls `prepare` a little ahead: the record
is written then, and `apply` only acts. `revert` ends the fault and records that it did. Both return a
`Transition` with the instants the change took effect, and are atomic with respect to SIGINT and
SIGTERM when called from the main thread (the signal is handled as soon as they return), so an
interrupted run never leaves a fault half-applied or unrecorded.

`close` reverts every fault still in force, the most recent first, then stops the stack; it is
idempotent, and the context manager calls it whatever ends the block: a normal end, an exception,
Ctrl-C (KeyboardInterrupt) or SIGTERM (turned into `SystemExit` while the block runs).

`LocalTarget.connect(run_dir)` drives a stack that another process runs (`bascule stack up` with
its control channel) the same way, over the channel; its `close` reverts what it applied and
leaves the stack running. `bascule inject` is built on it (`inject.inject`).
"""

from __future__ import annotations

import secrets
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

import httpx

from bascule.errors import FaultError, RevertError, TargetError
from bascule.faults import Fault, Flap
from bascule.model.design import Design
from bascule.model.loading import read_design
from bascule.plan.model import Action, ActionOp, Plan, Touch
from bascule.stack.layout import StackLayout, layout
from bascule.targets.base import ClosingTarget, Transition, signals_deferred
from bascule.targets.local.control import ControlClient, ControlError
from bascule.targets.local.effects import INSTANT, Effect, compute_effects, describe_effect
from bascule.targets.local.ledger import LEDGER_FILE, FaultRecord, Ledger, Owner, RevertedRecord
from bascule.targets.local.stack import LocalStack, read_state

__all__ = [
    "FaultBoardLike",
    "LocalTarget",
    "RemoteBoard",
    "Transition",
    "check_plan",
    "refusal",
    "signals_deferred",
]


class FaultBoardLike(Protocol):
    """What the target needs of a board: the stack's own `FaultBoard` or `RemoteBoard`."""

    def apply(self, key: str, effects: Sequence[Effect]) -> None: ...

    def revert(self, key: str) -> bool: ...


class RemoteBoard:
    """The board of a stack run by another process, reached over its control channel."""

    def __init__(self, client: ControlClient) -> None:
        self._client = client

    def apply(self, key: str, effects: Sequence[Effect]) -> None:
        try:
            self._client.apply_fault(key, effects)
        except (ControlError, httpx.HTTPError) as exc:
            raise FaultError(f"fault {key!r}: {exc}") from exc

    def revert(self, key: str) -> bool:
        try:
            return self._client.revert_fault(key)
        except (ControlError, httpx.HTTPError) as exc:
            raise RevertError(f"fault {key!r}: {exc}") from exc

    def close(self) -> None:
        self._client.close()


def refusal(fault: Fault, touch: Touch, stack_layout: StackLayout) -> str | None:
    """Why a local stack laid out as `stack_layout` cannot carry `fault` out on `touch`, or None."""
    inner = fault.fault if isinstance(fault, Flap) else fault
    if touch.empty:
        return None
    try:
        compute_effects(inner, touch, stack_layout)
    except FaultError as exc:
        return str(exc)
    return None


def check_plan(plan: Plan, design: Design) -> list[str]:
    """Every phase of `plan` a local stack of `design` cannot carry out, each with the reason.
    Pure, so that a run is refused before its stack is started."""
    if plan.design_id != design.id:
        return [f"the plan is for design {plan.design_id!r}, not {design.id!r}"]
    stack_layout = layout(design)
    refusals: list[str] = []
    for phase in plan.phases:
        reason = refusal(phase.fault, phase.touch, stack_layout)
        if reason is not None:
            refusals.append(f"phase {phase.index} ({phase.name}, {phase.kind}): {reason}")
    return refusals


class LocalTarget(ClosingTarget):
    """Applies and reverts a plan's faults on a local stack, recording each undo first."""

    def __init__(self, stack: LocalStack, *, session: str | None = None) -> None:
        self._setup(
            design=stack.design,
            stack_layout=stack.layout,
            board=stack.board,
            ledger=stack.ledger,
            stack=stack,
            session=session or f"run-{secrets.token_hex(3)}",
        )

    @classmethod
    def connect(cls, run_dir: Path, *, session: str | None = None) -> LocalTarget:
        """Drive the stack a `bascule stack up` runs in `run_dir`, over its control channel."""
        state = read_state(run_dir)
        control = state.get("control")
        if not isinstance(control, dict):
            raise TargetError(
                f"the stack in {run_dir} has no control channel (start it with `bascule stack up`)"
            )
        design_path = Path(str(state["design_path"]))
        design = read_design(design_path)
        if design.id != state.get("design"):
            raise TargetError(
                f"{design_path} now describes design {design.id!r}, but the stack runs "
                f"{state.get('design')!r}; restart the stack"
            )
        client = ControlClient(str(control["url"]), str(control["token"]))
        try:
            ledger = Ledger.open(Path(str(state.get("ledger", run_dir / LEDGER_FILE))))
        except BaseException:
            client.close()
            raise
        target = cls.__new__(cls)
        target._setup(
            design=design,
            stack_layout=layout(design),
            board=RemoteBoard(client),
            ledger=ledger,
            stack=None,
            session=session or f"inject-{secrets.token_hex(3)}",
        )
        return target

    def _setup(
        self,
        *,
        design: Design,
        stack_layout: StackLayout,
        board: FaultBoardLike,
        ledger: Ledger,
        stack: LocalStack | None,
        session: str,
    ) -> None:
        self.design = design
        self.layout = stack_layout
        self.session = session
        self._board = board
        self._ledger = ledger
        self._stack = stack
        self._active: dict[str, Action] = {}
        self._prepared: dict[str, tuple[Effect, ...]] = {}
        self._effects: dict[str, tuple[Effect, ...]] = {}
        self._lock = threading.RLock()
        self._closed = False
        self._previous_sigterm: Any = None

    @property
    def stack(self) -> LocalStack | None:
        """The stack this target runs in-process (None when connected over the control channel)."""
        return self._stack

    # -- plan time --

    def refusal(self, fault: Fault, touch: Touch) -> str | None:
        """Why this stack cannot carry `fault` out on `touch`, or None when it can."""
        return refusal(fault, touch, self.layout)

    def check(self, plan: Plan) -> list[str]:
        """Every phase of `plan` this target cannot carry out, each with the reason."""
        return check_plan(plan, self.design)

    # -- run time --

    def key(self, action: Action) -> str:
        return f"{self.session}/{action.key}"

    def active(self) -> list[str]:
        """The keys of the faults this target has in force, in the order applied."""
        with self._lock:
            return list(self._active)

    def prepare(self, action: Action, touch: Touch) -> None:
        """Write the fault's undo record to the ledger (fsynced) ahead of its instant, so that
        `apply` then only acts: the disk's latency stays off the fault's activation. A runner
        calls it some time before ``action.offset``; a fault prepared and never applied is
        recorded as such when reverted or at `close`."""
        if action.op is not ActionOp.APPLY:
            raise ValueError(f"prepare() takes an apply action, got {action.op.value}")
        key = self.key(action)
        effects = compute_effects(action.fault, touch, self.layout)
        with self._lock, signals_deferred():
            if self._closed:
                raise TargetError("the target is closed")
            if key in self._active or key in self._prepared:
                return
            self._ledger.append(
                FaultRecord(
                    key, action.fault.kind, action.phase, action.cycle, effects, Owner.me(), time.time()
                )
            )
            self._prepared[key] = effects

    def apply(self, action: Action, touch: Touch) -> Transition:
        """Put the fault in force, its undo record written to the ledger (fsynced) first — here,
        unless `prepare` wrote it already.

        Raises `FaultError` when the fault cannot be carried out or applying it failed (what was
        applied of it is undone, and the ledger says so).
        """
        called = time.monotonic()
        if action.op is not ActionOp.APPLY:
            raise ValueError(f"apply() takes an apply action, got {action.op.value}")
        key = self.key(action)
        with self._lock, signals_deferred():
            if self._closed:
                raise TargetError("the target is closed")
            if key in self._active:
                raise FaultError(f"fault {key!r} is already applied")
            me = Owner.me()
            effects = self._prepared.pop(key, None)
            if effects is None:
                effects = compute_effects(action.fault, touch, self.layout)
                self._ledger.append(
                    FaultRecord(key, action.fault.kind, action.phase, action.cycle, effects, me, time.time())
                )
            try:
                self._board.apply(key, effects)
            except BaseException as exc:
                self._ledger.append(RevertedRecord(key, me, time.time(), note=f"apply failed: {exc}"))
                raise
            self._active[key] = action
            self._effects[key] = effects
            done, wall = time.monotonic(), time.time()
        return Transition(
            key,
            ActionOp.APPLY,
            action.fault.kind,
            done,
            wall,
            done - called,
            tuple(describe_effect(e) for e in effects),
        )

    def revert(self, action: Action, touch: Touch | None = None) -> Transition:
        """End the fault `action` names (its apply or its revert action); a fault not in force is
        left alone (``changed`` is False). Raises `RevertError` if a part could not be restored;
        the fault then stays in the ledger for `bascule recover`."""
        called = time.monotonic()
        key = self.key(action)
        with self._lock, signals_deferred():
            applied = self._active.get(key)
            if applied is None:
                if self._prepared.pop(key, None) is not None:
                    self._ledger.append(RevertedRecord(key, Owner.me(), time.time(), note="never applied"))
                now = time.monotonic()
                return Transition(
                    key, ActionOp.REVERT, action.fault.kind, now, time.time(), now - called, (), False
                )
            return self._revert_locked(applied, called, note="")

    # -- ending --

    def close(self, *, timeout: float = 5.0) -> list[Transition]:
        """Revert every fault still in force (most recent first), then stop the stack (in-process,
        giving its processes `timeout` seconds to exit) or close the channel (connected); the
        reverts done. Idempotent. Raises `RevertError` at the end if a fault could not be
        reverted — after everything else was done."""
        reverted: list[Transition] = []
        with self._lock, signals_deferred():
            if self._closed:
                return reverted
            self._closed = True
            errors: list[str] = []
            for action in reversed(list(self._active.values())):
                try:
                    reverted.append(self._revert_locked(action, time.monotonic()))
                except (RevertError, OSError) as exc:
                    errors.append(str(exc))
            for key in list(self._prepared):
                try:
                    self._ledger.append(RevertedRecord(key, Owner.me(), time.time(), note="never applied"))
                except OSError as exc:
                    errors.append(str(exc))
                del self._prepared[key]
            if self._stack is not None:
                try:
                    self._stack.stop(timeout=timeout)
                except Exception as exc:
                    errors.append(f"stopping the stack: {exc}")
            else:
                if isinstance(self._board, RemoteBoard):
                    self._board.close()
                self._ledger.close()
        if errors:
            raise RevertError("; ".join(errors))
        return reverted

    def _revert_locked(self, action: Action, called: float, note: str = "closing") -> Transition:
        key = self.key(action)
        self._board.revert(key)
        self._ledger.append(RevertedRecord(key, Owner.me(), time.time(), note=note))
        del self._active[key]
        ended = tuple(describe_effect(e) for e in self._effects.pop(key, ()) if not isinstance(e, INSTANT))
        done, wall = time.monotonic(), time.time()
        return Transition(key, ActionOp.REVERT, action.fault.kind, done, wall, done - called, ended)
