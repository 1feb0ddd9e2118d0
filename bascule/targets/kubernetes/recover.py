"""`bascule recover RUN_DIR` for the Kubernetes target: restore every object a killed run changed.

A run killed by SIGKILL leaves its clusters as they were mid-fault, and its ledger
(``kubernetes-ledger.jsonl``) holding, for every fault it recorded and did not revert, the prior
state of each object it was changing. Recovery replays those records, most recent fault first,
with the same `execute.undo` a live revert uses: fields back to their original values (a field
two faults held is restored once, to the original both recorded), CoreDNS's Corefile composed
again without each fault's blocks (the original once none is left),
created objects deleted once their ``bascule.io/run-id`` label matches, and the pods still holding
a volume claim the run deleted (a data-loss killed between its claims and its pods) deleted too.
Every step is idempotent — a change the run never got to make is restored to the value it still
has — so recovering twice, or after a run that died before its first change, does no harm.

It connects with the kubeconfig and contexts the ledger names (or those given), and refuses a
run whose owner is still alive.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from bascule.errors import TargetError
from bascule.targets.kubernetes.cluster import KubeApi, connect_contexts
from bascule.targets.kubernetes.execute import GONE_WITHIN_S, Holds, deleted_line, undo, wait_gone
from bascule.targets.kubernetes.ledger import (
    KUBE_LEDGER_FILE,
    ChangeOp,
    KubeLedger,
    KubeRecovered,
    KubeReverted,
    read_kube_ledger,
)
from bascule.targets.local.ledger import Owner

__all__ = ["KubeRecoverReport", "recover_kubernetes"]


@dataclass(frozen=True)
class KubeRecoverReport:
    run_dir: Path
    run_id: str
    previously: str | None
    """``closed`` or ``recovered`` when the ledger already said the run was cleaned up."""
    restored: tuple[str, ...] = ()
    """One line per object restored or deleted."""
    final: tuple[str, ...] = ()
    """Deletions that cannot be undone (pods their controllers recreate, volumes)."""
    failed: tuple[str, ...] = ()
    notes: tuple[str, ...] = field(default=())

    @property
    def clean(self) -> bool:
        return not self.failed

    def lines(self) -> list[str]:
        out = [f"run directory {self.run_dir} (Kubernetes run {self.run_id})"]
        if self.previously:
            out.append(f"the ledger says the run was already {self.previously}")
        out += self.restored
        out += [f"final: {line}" for line in self.final]
        out += [f"FAILED: {line}" for line in self.failed]
        out += list(self.notes)
        out.append("clean: every object restored" if self.clean else "NOT clean: see above")
        return out


def recover_kubernetes(
    run_dir: Path, apis: Mapping[str, KubeApi] | None = None, *, gone_within: float = GONE_WITHIN_S
) -> KubeRecoverReport:
    """Restore what the run recorded in ``run_dir/kubernetes-ledger.jsonl`` and left in force.

    `apis` must hold a client for every context the ledger's faults touched; without it, clients
    are opened from the kubeconfig and contexts the ledger's run record names (and closed after).
    A fault is recorded reverted once the objects it created are gone (404), waited for at most
    `gone_within` seconds (finalizers: Chaos Mesh's controller lifting the fault).
    Raises `TargetError` when there is no ledger, when it names no run, or when its run is still
    alive."""
    if apis is None:
        run = read_kube_ledger(run_dir / KUBE_LEDGER_FILE).run
        if run is None or run.kubeconfig is None:
            raise TargetError(f"{run_dir / KUBE_LEDGER_FILE} names no kubeconfig: give the clients")
        opened = connect_contexts(run.contexts, run.kubeconfig)
        try:
            return recover_kubernetes(run_dir, opened, gone_within=gone_within)
        finally:
            for api in opened.values():
                api.close()
    path = run_dir / KUBE_LEDGER_FILE
    state = read_kube_ledger(path)
    if state.run is None:
        raise TargetError(f"{path} names no run (its first record is missing or damaged)")
    run = state.run
    if run.owner.alive() and not state.finished:
        raise TargetError(f"the run (pid {run.owner.pid}) is still alive: stop it, it reverts on exit")
    previously = "closed" if state.closed else "recovered" if state.recovered else None
    notes: list[str] = []
    if state.damaged:
        notes.append(
            f"{state.damaged} ledger line(s) could not be read (a write cut short by the kill); "
            "a fault whose record was cut short had made no change"
        )
    needed = {c.ref.context for record in state.active for c in record.changes}
    missing = sorted(needed - set(apis))
    if missing:
        raise TargetError(f"no client for context(s) {', '.join(missing)} the run changed")
    holds = Holds()
    for record in state.active:
        holds.take(record.key, record.changes)
    restored: list[str] = []
    final: list[str] = []
    failed: list[str] = []
    me = Owner.me()
    with KubeLedger.open(path) as ledger:
        for record in reversed(state.active):
            problems: list[str] = []
            deleted = []
            for change in reversed(record.changes):
                if change.op is ChangeOp.DELETE:
                    # Final; but a claim still held by its pods is finished (`execute.finish_claim`).
                    final.append(f"{record.key}: {change.ref} was deleted ({change.note or 'final'})")
                try:
                    line = undo(change, apis, holds, record.key, run.run_id)
                except TargetError as exc:
                    problems.append(f"{record.key}: {change.ref}: {exc}")
                    continue
                if line is not None:
                    restored.append(f"{record.key}: {line}")
                    if change.op is ChangeOp.CREATE and line == deleted_line(change.ref):
                        deleted.append(change.ref)
            try:
                left = wait_gone(deleted, apis, gone_within) if deleted else []
            except TargetError as exc:
                problems.append(f"{record.key}: {exc}")
                left = []
            for ref, finalizers in left:
                problems.append(
                    f"{record.key}: {ref} still exists {gone_within:g} s after its deletion "
                    f"(finalizers: {', '.join(finalizers) or 'none'}): recover again once it is gone"
                )
            failed += problems
            if not problems:
                ledger.append(KubeReverted(record.key, me, time.time(), note="reverted by bascule recover"))
        report = KubeRecoverReport(
            run_dir, run.run_id, previously, tuple(restored), tuple(final), tuple(failed), tuple(notes)
        )
        if not state.finished and not failed:
            summary = f"{len(state.active)} fault(s), {len(restored)} change(s) restored"
            ledger.append(KubeRecovered(time.time(), summary))
    return report
