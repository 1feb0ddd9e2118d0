"""The Kubernetes target: a plan's actions carried out through the Kubernetes API, every prior
state on disk first. Same protocol as `LocalTarget`, so that the runner drives either:

    apis = connect(target_file, kubeconfig)              # one client per listed context
    with KubernetesTarget.start(mapping, apis, run_dir) as target:
        refusals = target.check(plan)                     # phases the clusters cannot carry out
        for action in plan.actions:
            touch = plan.phases[action.phase].touch
            moved = target.apply(action, touch) if action.op is ActionOp.APPLY else target.revert(action)
            journal(moved.monotonic, moved.wall, moved.effects)   # effects: one line per API call

`apply` computes the call plan (`calls.compute_calls`), reads what it selects and the prior state
of everything it will change (`execute.expand`), appends that to the ledger and fsyncs it, and
only then makes the changes. When a change fails, what was done is undone and the fault raises
`FaultError`. `revert` undoes a fault's changes, most recent first, and records it; `close`
reverts every fault still in force and closes the ledger. A run killed meanwhile leaves the
ledger to `recover.recover`.
"""

from __future__ import annotations

import secrets
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from bascule.errors import FaultError, RevertError, TargetError
from bascule.faults import Fault
from bascule.plan.model import Action, ActionOp, Plan, Touch
from bascule.targets.base import ClosingTarget, Transition, signals_deferred
from bascule.targets.kubernetes.calls import CallPlan, ClusterFacts, check_plan, compute_calls
from bascule.targets.kubernetes.cluster import KubeApi, discover
from bascule.targets.kubernetes.execute import Holds, carry_out, expand, undo
from bascule.targets.kubernetes.ledger import (
    KUBE_LEDGER_FILE,
    Change,
    KubeClosed,
    KubeFault,
    KubeLedger,
    KubeReverted,
)
from bascule.targets.kubernetes.mapping import KubeMapping
from bascule.targets.local.ledger import Owner

__all__ = ["KubernetesTarget", "new_run_id"]


def new_run_id() -> str:
    """Six hex digits: short enough for object names, labels and CoreDNS comments."""
    return secrets.token_hex(3)


class KubernetesTarget(ClosingTarget):
    """Applies and reverts a plan's faults on the clusters of a target file, recording each first."""

    def __init__(
        self,
        mapping: KubeMapping,
        apis: Mapping[str, KubeApi],
        ledger: KubeLedger,
        *,
        run_id: str,
        facts: Mapping[str, ClusterFacts | None],
    ) -> None:
        unlisted = sorted(set(apis) - set(mapping.contexts))
        if unlisted:
            raise TargetError(f"context(s) {', '.join(unlisted)} are not listed in the target file")
        self.mapping = mapping
        self.run_id = run_id
        self.facts = dict(facts)
        self._apis = dict(apis)
        self._ledger = ledger
        self._holds = Holds()
        self._active: dict[str, tuple[Action, tuple[Change, ...]]] = {}
        self._prepared: dict[str, tuple[Change, ...]] = {}
        self._lock = threading.RLock()
        self._closed = False
        self._previous_sigterm: Any = None

    @classmethod
    def start(
        cls,
        mapping: KubeMapping,
        apis: Mapping[str, KubeApi],
        run_dir: Path,
        *,
        run_id: str | None = None,
        kubeconfig: str | None = None,
    ) -> KubernetesTarget:
        """Discover what the clusters serve (GET only) and start the run's ledger in `run_dir`,
        naming the kubeconfig (by default, the one the clients were configured from) for recover."""
        facts = discover(apis)
        run_id = run_id or new_run_id()
        if kubeconfig is None:
            kubeconfig = next((api.kubeconfig for api in apis.values() if api.kubeconfig), None)
        ledger = KubeLedger.create(
            run_dir / KUBE_LEDGER_FILE,
            run_id=run_id,
            design=mapping.design.id,
            kubeconfig=kubeconfig,
            contexts=tuple(apis),
        )
        return cls(mapping, apis, ledger, run_id=run_id, facts=facts)

    # -- plan time --

    def call_plan(self, fault: Fault, touch: Touch, key: str = "plan") -> CallPlan:
        return compute_calls(fault, touch, self.mapping, self.facts, run_id=self.run_id, key=key)

    def refusal(self, fault: Fault, touch: Touch) -> str | None:
        """Why the clusters cannot carry `fault` out on `touch`, or None when they can."""
        found = self.call_plan(fault, touch)
        return None if found.refusal is None else str(found.refusal)

    def check(self, plan: Plan) -> list[str]:
        return check_plan(plan, self.mapping, self.facts, run_id=self.run_id)

    # -- run time --

    def key(self, action: Action) -> str:
        return f"{self.run_id}/{action.key}"

    def active(self) -> list[str]:
        with self._lock:
            return list(self._active)

    def _expand(self, action: Action, touch: Touch) -> tuple[Change, ...]:
        found = self.call_plan(action.fault, touch, action.key)
        if found.refusal is not None:
            raise FaultError(f"{action.fault.kind} refused: {found.refusal}")
        changes: list[Change] = []
        for call in found.calls:
            api = self._apis.get(call.context)
            if api is None:
                raise FaultError(f"no client for context {call.context!r}")
            changes += expand(call, api, self._holds)
        return tuple(changes)

    def _record(self, key: str, action: Action, changes: tuple[Change, ...]) -> None:
        record = KubeFault(
            key, action.fault.kind, action.phase, action.cycle, changes, Owner.me(), time.time()
        )
        self._ledger.append(record)
        self._holds.take(key, changes)

    def prepare(self, action: Action, touch: Touch) -> None:
        """Read and record the fault's prior state ahead of its instant, so that `apply` only acts."""
        if action.op is not ActionOp.APPLY:
            raise ValueError(f"prepare() takes an apply action, got {action.op.value}")
        key = self.key(action)
        with self._lock, signals_deferred():
            if self._closed:
                raise TargetError("the target is closed")
            if key in self._active or key in self._prepared:
                return
            changes = self._expand(action, touch)
            self._record(key, action, changes)
            self._prepared[key] = changes

    def apply(self, action: Action, touch: Touch) -> Transition:
        """Put the fault in force, the prior state of all it changes written to the ledger first.
        Raises `FaultError` when refused, or when a change failed (what was done is undone)."""
        called = time.monotonic()
        if action.op is not ActionOp.APPLY:
            raise ValueError(f"apply() takes an apply action, got {action.op.value}")
        key = self.key(action)
        with self._lock, signals_deferred():
            if self._closed:
                raise TargetError("the target is closed")
            if key in self._active:
                raise FaultError(f"fault {key!r} is already applied")
            changes = self._prepared.pop(key, None)
            if changes is None:
                changes = self._expand(action, touch)
                self._record(key, action, changes)
            lines: list[str] = []
            try:
                for change in changes:
                    lines.append(carry_out(change, self._apis))
            except TargetError as exc:
                _, problems = self._undo(key, changes)
                note = f"apply failed: {exc}" + (f"; undo failed: {'; '.join(problems)}" if problems else "")
                if not problems:
                    self._ledger.append(KubeReverted(key, Owner.me(), time.time(), note=note))
                raise FaultError(f"fault {key!r}: {exc}") from exc
            self._active[key] = (action, changes)
            done, wall = time.monotonic(), time.time()
        return Transition(key, ActionOp.APPLY, action.fault.kind, done, wall, done - called, tuple(lines))

    def _undo(self, key: str, changes: tuple[Change, ...]) -> tuple[list[str], list[str]]:
        lines: list[str] = []
        problems: list[str] = []
        for change in reversed(changes):
            try:
                line = undo(change, self._apis, self._holds, key, self.run_id)
            except TargetError as exc:
                problems.append(str(exc))
                continue
            if line is not None:
                lines.append(line)
        return lines, problems

    def revert(self, action: Action, touch: Touch | None = None) -> Transition:
        """End the fault `action` names; one not in force is left alone (``changed`` False).
        Raises `RevertError` when a change could not be undone: the fault then stays in the
        ledger for `bascule recover`."""
        called = time.monotonic()
        key = self.key(action)
        with self._lock, signals_deferred():
            entry = self._active.get(key)
            if entry is None:
                prepared = self._prepared.pop(key, None)
                if prepared is not None:
                    self._holds.drop(key, prepared)
                    self._ledger.append(KubeReverted(key, Owner.me(), time.time(), note="never applied"))
                now = time.monotonic()
                return Transition(
                    key, ActionOp.REVERT, action.fault.kind, now, time.time(), now - called, (), False
                )
            return self._revert_locked(key, entry, called, note="")

    def _revert_locked(
        self, key: str, entry: tuple[Action, tuple[Change, ...]], called: float, note: str
    ) -> Transition:
        action, changes = entry
        lines, problems = self._undo(key, changes)
        if problems:
            raise RevertError(f"fault {key!r}: {'; '.join(problems)}")
        self._ledger.append(KubeReverted(key, Owner.me(), time.time(), note=note))
        del self._active[key]
        done, wall = time.monotonic(), time.time()
        return Transition(key, ActionOp.REVERT, action.fault.kind, done, wall, done - called, tuple(lines))

    # -- ending --

    def close(self) -> list[Transition]:
        """Revert every fault still in force (most recent first), then close the ledger.
        Idempotent. Raises `RevertError` at the end if a fault could not be reverted."""
        reverted: list[Transition] = []
        with self._lock, signals_deferred():
            if self._closed:
                return reverted
            self._closed = True
            errors: list[str] = []
            for key, entry in reversed(list(self._active.items())):
                try:
                    reverted.append(self._revert_locked(key, entry, time.monotonic(), note="closing"))
                except RevertError as exc:
                    errors.append(str(exc))
            for key, prepared in list(self._prepared.items()):
                self._holds.drop(key, prepared)
                self._ledger.append(KubeReverted(key, Owner.me(), time.time(), note="never applied"))
                del self._prepared[key]
            if not errors:
                self._ledger.append(KubeClosed(time.time()))
            self._ledger.close()
        if errors:
            raise RevertError("; ".join(errors))
        return reverted
