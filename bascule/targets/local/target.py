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
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Protocol

import httpx

from bascule.errors import FaultError, RevertError, TargetError
from bascule.faults import Fault, Flap
from bascule.journal.discovered import OutsideReach
from bascule.journal.hops import PathHop
from bascule.model.design import Design
from bascule.model.loading import read_design
from bascule.model.topology import Link
from bascule.plan.model import Action, Plan, Touch
from bascule.stack.layout import ProcessKind, StackLayout, layout
from bascule.targets.base import (
    FaultTraffic,
    JsonFields,
    LedgerTarget,
    TargetEvent,
    Transition,
    signals_deferred,
)
from bascule.targets.local.control import ControlClient, ControlError
from bascule.targets.local.effects import INSTANT, Effect, compute_effects, describe_effect
from bascule.targets.local.ledger import LEDGER_FILE, FaultRecord, Ledger, Owner, RevertedRecord
from bascule.targets.local.procfs import MARKER_ENV
from bascule.targets.local.scaler import ScaleEvent
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

    def traffic(self, key: str) -> FaultTraffic | None: ...

    def stopped_at(self, key: str) -> float | None: ...


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

    def stopped_at(self, key: str) -> float | None:
        return None  # another process's clock: the apply's own end stands for it

    def traffic(self, key: str) -> FaultTraffic | None:
        try:
            return self._client.fault_traffic(key)
        except (ControlError, httpx.HTTPError, ValueError, TypeError):
            return None  # a stack from before the count, or the channel lost: not counted

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


class LocalTarget(LedgerTarget[tuple[Effect, ...]]):
    """Applies and reverts a plan's faults on a local stack, recording each undo first; the runner's
    `Target` when it runs the stack in-process."""

    name = "local"

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
        self._board = board
        self._ledger = ledger
        self._stack = stack
        self._stop_timeout = 5.0
        self._links: dict[str, Link] = {route.name: route.hop for route in stack_layout.routes}
        self._start_ledger(session)

    @property
    def stack(self) -> LocalStack | None:
        """The stack this target runs in-process (None when connected over the control channel)."""
        return self._stack

    def _running(self) -> LocalStack:
        if self._stack is None:
            raise TargetError("this target drives a stack another process runs")
        return self._stack

    # -- plan time --

    def refusal(self, fault: Fault, touch: Touch) -> str | None:
        """Why this stack cannot carry `fault` out on `touch`, or None when it can."""
        return refusal(fault, touch, self.layout)

    def check(self, plan: Plan) -> list[str]:
        """Every phase of `plan` this target cannot carry out, each with the reason."""
        return check_plan(plan, self.design)

    # -- what the runner reads of the stack --

    @property
    def entries(self) -> dict[str, str]:
        return self._running().entries()

    @property
    def store_urls(self) -> dict[str, list[str]]:
        stack = self._running()
        stores: dict[str, list[str]] = {}
        for replica in stack.supervisor.replicas():
            spec = stack.replica_spec(replica.spec.name)
            if spec is not None and spec.kind is ProcessKind.STORE and replica.url:
                stores.setdefault(spec.region, []).append(replica.url)
        return stores

    def started_record(self) -> JsonFields:
        stack = self._running()
        return {
            "cold_start": stack.timings.ready,
            "entries": self.entries,
            "dns_port": stack.dns.port,
            "route_ports": dict(stack.route_ports),
            "processes": [
                {"name": r.spec.name, "region": r.spec.group, "pid": r.pid, "start_time": r.start_time}
                for r in stack.supervisor.replicas()
            ],
        }

    def transition_fields(self) -> JsonFields:
        return {}

    def take_hops(self) -> list[PathHop]:
        """The fault plane's hops since the last call, each route read as the design's link."""
        out: list[PathHop] = []
        for hop in self._running().plane.take_hops():
            link = self._links.get(hop.route)
            if link is None:
                continue
            source = link.source
            out.append(
                PathHop(
                    trace_id=hop.trace_id,
                    started=hop.started,
                    took=hop.took,
                    status=hop.status,
                    relayed=hop.relayed,
                    route=hop.route,
                    caller=None if source is None else source.name,
                    caller_region=None if source is None else source.region,
                    component=link.target.name,
                    region=link.target.region,
                    opaque=hop.opaque,
                )
            )
        return out

    def take_outside(self) -> list[OutsideReach]:
        """Requests to hosts outside the design that the egress answered, and lookups of names
        outside it, since the last call."""
        stack = self._running()
        reaches = [] if stack.egress is None else stack.egress.take()
        if stack.lookups is not None:
            reaches += stack.lookups.take()
        return reaches

    def subscribe(self, listener: Callable[[TargetEvent], None]) -> None:
        """The stack's scale-up events (designs with an autoscaler), as ``scale-up`` records."""
        scaler = self._running().scaler
        if scaler is None:
            return

        def forward(event: ScaleEvent) -> None:
            listener(
                TargetEvent(
                    "scale-up",
                    {"event": event.kind, "region": event.region, "replicas": list(event.replicas)},
                    at=event.at,
                    instants={} if event.due is None else {"due": event.due},
                    message=f"scale-up {event.kind}: {event.region} ({len(event.replicas)} replicas)",
                )
            )

        scaler.subscribe(forward)

    def process_environment(self) -> dict[str, str]:
        return {MARKER_ENV: self._running().marker}

    def record_process(self, name: str, pid: int, start_time: int) -> None:
        self._running().record_process(name, pid, start_time)

    def stop(self, *, hurry: bool) -> None:
        if self._stack is not None:
            self._stack.stop(timeout=0.5 if hurry else 3.0)

    # -- the ledger's bookkeeping (`LedgerTarget`) --

    def _compute(self, action: Action, touch: Touch) -> tuple[Effect, ...]:
        return compute_effects(action.fault, touch, self.layout)

    def _record(self, key: str, action: Action, held: tuple[Effect, ...]) -> None:
        self._ledger.append(
            FaultRecord(key, action.fault.kind, action.phase, action.cycle, held, Owner.me(), time.time())
        )

    def _carry_out(self, key: str, held: tuple[Effect, ...]) -> tuple[str, ...]:
        try:
            self._board.apply(key, held)
        except BaseException as exc:
            self._ledger.append(RevertedRecord(key, Owner.me(), time.time(), note=f"apply failed: {exc}"))
            raise
        return tuple(describe_effect(e) for e in held)

    def holds_anything(self, action: Action) -> bool:
        """Whether the fault `action` put in force holds a part its revert ends: a kill, a wipe or
        connections reset act once, and leave nothing to hold."""
        with self._lock:
            entry = self._active.get(self.key(action))
        return entry is not None and not all(isinstance(e, INSTANT) for e in entry[1])

    def _took_effect(self, key: str) -> float | None:
        return self._board.stopped_at(key)

    def _traffic(self, key: str, held: tuple[Effect, ...]) -> FaultTraffic | None:
        try:
            return self._board.traffic(key)
        except Exception:  # a count lost must never keep a fault from being reverted
            return None

    def _undo(self, key: str, held: tuple[Effect, ...]) -> tuple[str, ...]:
        self._board.revert(key)
        return tuple(describe_effect(e) for e in held if not isinstance(e, INSTANT))

    def _record_reverted(self, key: str, note: str) -> None:
        self._ledger.append(RevertedRecord(key, Owner.me(), time.time(), note=note))

    def _end(self, clean: bool) -> list[str]:
        if self._stack is not None:
            try:
                self._stack.stop(timeout=self._stop_timeout)
            except Exception as exc:
                return [f"stopping the stack: {exc}"]
            return []
        if isinstance(self._board, RemoteBoard):
            self._board.close()
        self._ledger.close()
        return []

    def close(self, *, timeout: float = 5.0) -> list[Transition]:
        """Revert every fault still in force (most recent first), then stop the stack (in-process,
        giving its processes `timeout` seconds to exit) or close the channel (connected); the
        reverts done. Idempotent. Raises `RevertError` at the end if a fault could not be
        reverted — after everything else was done."""
        self._stop_timeout = timeout
        return super().close()
