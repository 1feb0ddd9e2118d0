"""The Kubernetes target: a plan's actions carried out through the Kubernetes API, every prior
state on disk first. The same `LedgerTarget` as `LocalTarget`, so that the runner drives either:

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
import time
from collections.abc import Callable, Mapping
from pathlib import Path

from bascule.errors import FaultError, RevertError, TargetError
from bascule.faults import Fault
from bascule.journal.discovered import OutsideReach
from bascule.journal.hops import PathHop
from bascule.plan.model import Action, Plan, Touch
from bascule.targets.base import JsonFields, LedgerTarget, TargetEvent
from bascule.targets.kubernetes.calls import CallPlan, ClusterFacts, check_plan, compute_calls
from bascule.targets.kubernetes.cluster import KubeApi, discover
from bascule.targets.kubernetes.execute import (
    CLAIM_HELD,
    GONE_WITHIN_S,
    Holds,
    carry_out,
    deleted_line,
    expand,
    undo,
    wait_gone,
)
from bascule.targets.kubernetes.ledger import (
    KUBE_LEDGER_FILE,
    Change,
    ChangeOp,
    KubeClosed,
    KubeFault,
    KubeLedger,
    KubeReverted,
    ObjectRef,
)
from bascule.targets.kubernetes.mapping import KubeMapping
from bascule.targets.local.ledger import Owner

__all__ = ["KubernetesTarget", "new_run_id"]


def new_run_id() -> str:
    """Six hex digits: short enough for object names, labels and CoreDNS comments."""
    return secrets.token_hex(3)


class KubernetesTarget(LedgerTarget[tuple[Change, ...]]):
    """Applies and reverts a plan's faults on the clusters of a target file, recording each first;
    the runner's `Target`."""

    name = "kubernetes"

    def __init__(
        self,
        mapping: KubeMapping,
        apis: Mapping[str, KubeApi],
        ledger: KubeLedger,
        *,
        run_id: str,
        facts: Mapping[str, ClusterFacts | None],
        gone_within: float = GONE_WITHIN_S,
    ) -> None:
        unlisted = sorted(set(apis) - set(mapping.contexts))
        if unlisted:
            raise TargetError(f"context(s) {', '.join(unlisted)} are not listed in the target file")
        self.mapping = mapping
        self.run_id = run_id
        self.facts = dict(facts)
        self._apis = dict(apis)
        self._seen: dict[str, int] = {}
        self._listeners: list[Callable[[TargetEvent], None]] = []
        self._ledger = ledger
        self._holds = Holds()
        self.gone_within = gone_within
        """Seconds a revert waits for the objects it deleted to be gone before it fails."""
        self._deletion: JsonFields | None = None
        self._start_ledger(run_id)

    @classmethod
    def start(
        cls,
        mapping: KubeMapping,
        apis: Mapping[str, KubeApi],
        run_dir: Path,
        *,
        run_id: str | None = None,
        kubeconfig: str | None = None,
        gone_within: float = GONE_WITHIN_S,
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
        return cls(mapping, apis, ledger, run_id=run_id, facts=facts, gone_within=gone_within)

    # -- plan time --

    def call_plan(self, fault: Fault, touch: Touch, key: str = "plan") -> CallPlan:
        return compute_calls(fault, touch, self.mapping, self.facts, run_id=self.run_id, key=key)

    def refusal(self, fault: Fault, touch: Touch) -> str | None:
        """Why the clusters cannot carry `fault` out on `touch`, or None when they can."""
        found = self.call_plan(fault, touch)
        return None if found.refusal is None else str(found.refusal)

    def check(self, plan: Plan) -> list[str]:
        return check_plan(plan, self.mapping, self.facts, run_id=self.run_id)

    # -- what the runner reads --

    @property
    def entries(self) -> dict[str, str]:
        return dict(self.mapping.target.entries)

    @property
    def store_urls(self) -> dict[str, list[str]]:
        return {r: list(urls) for r, urls in self.mapping.target.stores.items()}

    def api_calls(self) -> list[list[str]]:
        """Every Kubernetes API request made since the last call: [method, path, context]."""
        out: list[list[str]] = []
        for api in self._apis.values():
            seen = self._seen.get(api.context, 0)
            out += [list(call) for call in api.made[seen:]]
            self._seen[api.context] = len(api.made)
        return out

    def started_record(self) -> JsonFields:
        return {
            "run_id": self.run_id,
            "contexts": {c: a.server for c, a in self._apis.items()},
            "chaos_mesh": {c: sorted(f.chaos) if f else [] for c, f in self.facts.items()},
            "entries": self.entries,
            "api_calls": self.api_calls(),
        }

    def take_hops(self) -> list[PathHop]:
        """Nothing: bascule relays no request on a cluster (paths there come from OTLP spans)."""
        return []

    def take_outside(self) -> list[OutsideReach]:
        """Nothing: a cluster's egress is not bascule's (an outside host shows only in OTLP spans)."""
        return []

    def transition_fields(self) -> JsonFields:
        """The API calls of the transition; after a revert that deleted objects, when: ``deletion``
        holds their count, the seconds from the revert's start to the last DELETE sent
        (``deletes_sent_after``) and to the last of them gone (``gone_after``; null when one was
        still there when the wait ended)."""
        deletion, self._deletion = self._deletion, None
        if deletion is None:
            return {"api_calls": self.api_calls()}
        return {"api_calls": self.api_calls(), "deletion": deletion}

    def subscribe(self, listener: Callable[[TargetEvent], None]) -> None:
        """The API calls made after the last transition (closing), as a ``kubernetes-calls`` record."""
        self._listeners.append(listener)

    def stop(self, *, hurry: bool) -> None:
        left = self.api_calls()
        if left:
            for listener in self._listeners:
                listener(TargetEvent("kubernetes-calls", {"api_calls": left}))
        for api in self._apis.values():
            api.close()

    # -- the ledger's bookkeeping (`LedgerTarget`) --

    def _compute(self, action: Action, touch: Touch) -> tuple[Change, ...]:
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

    def _record(self, key: str, action: Action, held: tuple[Change, ...]) -> None:
        record = KubeFault(key, action.fault.kind, action.phase, action.cycle, held, Owner.me(), time.time())
        self._ledger.append(record)
        self._holds.take(key, held)

    def _carry_out(self, key: str, held: tuple[Change, ...]) -> tuple[str, ...]:
        lines: list[str] = []
        try:
            for change in held:
                lines.append(carry_out(change, self._apis, self._holds))
        except TargetError as exc:
            undone, problems = self._undo_all(key, held)
            # What the undo found beyond restoring (a deleted claim its pods still hold) is said.
            finished = "".join(f"; {line}" for line in undone if CLAIM_HELD in line)
            note = f"apply failed: {exc}{finished}" + (
                f"; undo failed: {'; '.join(problems)}" if problems else ""
            )
            if not problems:
                self._ledger.append(KubeReverted(key, Owner.me(), time.time(), note=note))
            raise FaultError(f"fault {key!r}: {exc}{finished}") from exc
        return tuple(lines)

    def _undo_all(self, key: str, changes: tuple[Change, ...]) -> tuple[list[str], list[str]]:
        """Undo `changes`, most recent first, then wait until every object deleted is gone: the
        fault is reverted only then (a Chaos Mesh object is held by its finalizer until its
        controller has lifted the fault)."""
        lines: list[str] = []
        problems: list[str] = []
        deleted: list[ObjectRef] = []
        began = time.monotonic()
        for change in reversed(changes):
            try:
                line = undo(change, self._apis, self._holds, key, self.run_id)
            except TargetError as exc:
                problems.append(str(exc))
                continue
            if line is not None:
                lines.append(line)
                if change.op is ChangeOp.CREATE and line == deleted_line(change.ref):
                    deleted.append(change.ref)
        if deleted:
            sent = time.monotonic()
            try:
                left = wait_gone(deleted, self._apis, self.gone_within)
            except TargetError as exc:
                problems.append(str(exc))
                left = [(ref, []) for ref in deleted]
            gone = time.monotonic()
            for ref, finalizers in left:
                held = ", ".join(finalizers) or "none"
                problems.append(
                    f"{ref} still exists {gone - sent:.1f} s after its deletion (finalizers: {held}): "
                    "the fault may still be in force"
                )
            if not left:
                lines.append(f"{len(deleted)} deleted object(s) gone {gone - sent:.2f} s after the DELETE")
            self._deletion = {
                "objects": len(deleted),
                "deletes_sent_after": round(sent - began, 6),
                "gone_after": None if left else round(gone - began, 6),
            }
        return lines, problems

    def _undo(self, key: str, held: tuple[Change, ...]) -> tuple[str, ...]:
        lines, problems = self._undo_all(key, held)
        if problems:
            raise RevertError(f"fault {key!r}: {'; '.join(problems)}")
        return tuple(lines)

    def _record_reverted(self, key: str, note: str) -> None:
        self._ledger.append(KubeReverted(key, Owner.me(), time.time(), note=note))

    def _forget(self, key: str, held: tuple[Change, ...]) -> None:
        self._holds.drop(key, held)
        self._record_reverted(key, "never applied")

    def _end(self, clean: bool) -> list[str]:
        if clean:
            self._ledger.append(KubeClosed(time.time()))
        self._ledger.close()
        return []
