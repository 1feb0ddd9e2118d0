"""Carrying a call plan out, and undoing it: the effectful half of the Kubernetes adapters.

For each `Call`, `expand` reads what it selects (lists, gets) and returns the `Change`s it will make,
each with the prior state of what it changes; the target writes them to the ledger (fsynced), and
only then `carry_out` makes each change. `undo` reverts one change: a patched field is set back to
its original value (or removed, when it had none) once no other fault in force holds it, a text
field that faults append to (CoreDNS's Corefile) is composed again from its original and the texts
of the faults still in force (the original, byte for byte, once none is), a created object is
deleted after its ``bascule.io/run-id`` label is checked, and a deletion stays (pods are recreated
by their controllers; volumes are gone) — but a volume claim the fault deleted that a pod still
holds is finished: its pods are deleted too (`finish_claim`).

Safety checks made here, before anything changes: a pod with no controller is never deleted (it
would not come back), a volume claim is deleted only when its StatefulSet makes it again, and a
call marked ``required`` that matches nothing fails the fault.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

from bascule.errors import FaultError, TargetError
from bascule.targets.kubernetes.calls import Call, ChangeMode, FieldChange, Verb, corefile_with
from bascule.targets.kubernetes.cluster import KubeApi
from bascule.targets.kubernetes.ledger import Change, ChangeOp, FieldState, ObjectRef
from bascule.targets.kubernetes.resources import NODES, POD_EVICTION, PODS, PVCS, RUN_LABEL

__all__ = [
    "CLAIM_HELD",
    "GONE_WITHIN_S",
    "Holds",
    "carry_out",
    "deleted_line",
    "expand",
    "finish_claim",
    "undo",
    "wait_gone",
]

CLAIM_HELD: Final = "was deleted and still held by pod(s)"
"""What every line of `finish_claim` says: a claim the fault deleted that pods still hold."""

GONE_WITHIN_S: Final = 60.0
"""How long a revert waits for the objects it deleted to be gone (a finalizer holds a Chaos Mesh
object until its controller has lifted the fault from every pod)."""

_ABSENT = object()


def _read(obj: Mapping[str, Any], path: Sequence[str]) -> Any:
    current: Any = obj
    for part in path:
        if not isinstance(current, Mapping) or part not in current:
            return _ABSENT
        current = current[part]
    return current


def _nested(path: Sequence[str], value: Any) -> dict[str, Any]:
    out: dict[str, Any] = {path[-1]: value}
    for part in reversed(path[:-1]):
        out = {part: out}
    return out


def _merge(into: dict[str, Any], patch: Mapping[str, Any]) -> dict[str, Any]:
    for key, value in patch.items():
        if isinstance(value, Mapping) and isinstance(into.get(key), dict):
            _merge(into[key], value)
        else:
            into[key] = value
    return into


def _shown(present: bool, value: Any) -> str:
    if not present:
        return "absent"
    if isinstance(value, str) and "\n" in value:
        return f"{value.count(chr(10))} line(s)"
    return "true" if value is True else "false" if value is False else str(value)


@dataclass
class _Hold:
    before_present: bool
    before: Any
    holders: list[str] = field(default_factory=list)
    appended: dict[str, str] = field(default_factory=dict)
    """A text field: what each fault holding it appends, oldest first."""


class Holds:
    """Fields that faults in force have changed, with their original values: when faults overlap on
    a field (two cordons of one node), the last one reverted restores the original; a text field
    that several append to (CoreDNS's Corefile under two dns faults) is the original with what each
    fault still in force appends (`calls.corefile_with`)."""

    def __init__(self) -> None:
        self._held: dict[tuple[ObjectRef, tuple[str, ...]], _Hold] = {}

    def original(self, ref: ObjectRef, path: tuple[str, ...]) -> tuple[bool, Any] | None:
        hold = self._held.get((ref, path))
        return None if hold is None else (hold.before_present, hold.before)

    def appended(self, ref: ObjectRef, path: tuple[str, ...]) -> list[tuple[str, str]]:
        """What each fault holding a text field appends to it, oldest first: (key, text)."""
        hold = self._held.get((ref, path))
        return [] if hold is None else list(hold.appended.items())

    def take(self, key: str, changes: Iterable[Change]) -> None:
        for change in changes:
            for f in change.fields:
                hold = self._held.setdefault((change.ref, f.path), _Hold(f.before_present, f.before))
                if key not in hold.holders:
                    hold.holders.append(key)
                if f.mode == ChangeMode.APPEND.value:
                    hold.appended.setdefault(key, str(f.after))

    def release(self, key: str, ref: ObjectRef, path: tuple[str, ...]) -> list[str]:
        """Drop `key`'s hold; the faults that still hold the field (none: restore it now)."""
        hold = self._held.get((ref, path))
        if hold is None:
            return []
        if key in hold.holders:
            hold.holders.remove(key)
        hold.appended.pop(key, None)
        if not hold.holders:
            del self._held[(ref, path)]
        return list(hold.holders)

    def drop(self, key: str, changes: Iterable[Change]) -> None:
        """Release `key`'s holds without restoring anything (a fault recorded, never applied)."""
        for change in changes:
            for f in change.fields:
                self.release(key, change.ref, f.path)


def _ref(call: Call, obj: Mapping[str, Any]) -> ObjectRef:
    meta = obj.get("metadata") or {}
    namespace = meta.get("namespace") if call.resource.namespaced else None
    return ObjectRef(call.context, call.resource, namespace or call.namespace, str(meta.get("name")))


def _pods(call: Call, api: KubeApi) -> list[dict[str, Any]]:
    pods = api.list(PODS, call.namespace, dict(call.labels))
    pods = [p for p in pods if _read(p, ("metadata", "deletionTimestamp")) in (_ABSENT, None)]
    if call.on_nodes is None:
        return pods
    nodes = {str(_read(n, ("metadata", "name"))) for n in api.list(NODES, None, dict(call.on_nodes))}
    return [p for p in pods if _read(p, ("spec", "nodeName")) in nodes]


def _autoscalers(call: Call, api: KubeApi) -> list[tuple[dict[str, Any], str]]:
    """The HPAs whose ``spec.scaleTargetRef`` names a workload the call selects, each as the COPY
    changes read it, with a note: an HPA with no ``status.currentReplicas`` (no controller has
    written it, or it omits a zero) is read as holding its workload's ``spec.replicas``; one whose
    workload is at zero replicas (Kubernetes does not autoscale it) is returned unchanged, noted
    ``idle``, and left alone."""
    scaled = call.scaling
    assert scaled is not None
    workloads = {
        str(_read(w, ("metadata", "name"))): w for w in api.list(scaled, call.namespace, dict(call.labels))
    }
    out: list[tuple[dict[str, Any], str]] = []
    for hpa in api.list(call.resource, call.namespace):
        ref = _read(hpa, ("spec", "scaleTargetRef"))
        if not isinstance(ref, Mapping) or ref.get("kind") != scaled.kind:
            continue
        group = str(ref.get("apiVersion") or "").rpartition("/")[0]
        workload = workloads.get(str(ref.get("name")))
        if workload is None or group != scaled.group:
            continue
        if _read(hpa, ("status", "currentReplicas")) not in (_ABSENT, None):
            out.append((hpa, ""))
            continue
        replicas = _read(workload, ("spec", "replicas"))
        if not isinstance(replicas, int) or replicas <= 0:
            out.append((hpa, f"idle: its {scaled.kind} is at zero replicas, which no HPA scales"))
            continue
        view = dict(hpa, status=dict(hpa.get("status") or {}, currentReplicas=replicas))
        out.append((view, f"no status.currentReplicas: pinned to its {scaled.kind}'s spec.replicas"))
    return out


def _claims_of(pod: Mapping[str, Any]) -> list[str]:
    """The names of the volume claims `pod` uses."""
    volumes = _read(pod, ("spec", "volumes"))
    listed = volumes if isinstance(volumes, list) else []
    found = [_read(v, ("persistentVolumeClaim", "claimName")) for v in listed if isinstance(v, Mapping)]
    return [c for c in found if isinstance(c, str)]


def _check_claims_come_back(ref: ObjectRef, pod: Mapping[str, Any]) -> None:
    """Raise `FaultError` unless every claim of `pod` is one its StatefulSet makes again: a claim of
    its ``volumeClaimTemplates``, named ``<template>-<pod>``. A Deployment's (or any other) pod
    names its claim in its template: its replacement is made at once, waits unscheduled while the
    claim is being deleted (an unscheduled pod does not hold a claim), then stays Pending for good
    on a claim nothing makes again — the store would never come back."""
    owner = _controller(pod)
    kind = "" if owner is None else str(owner.get("kind"))
    lost = [c for c in _claims_of(pod) if kind != "StatefulSet" or not c.endswith(f"-{ref.name}")]
    if lost:
        made_by = f"{kind} {owner.get('name')}" if owner is not None else "no controller"
        raise FaultError(
            f"{ref} (made by {made_by}) claims {', '.join(lost)}, which nothing would make again: "
            "its replacement would stay Pending for good. data-loss deletes only the claims a "
            "StatefulSet makes from its volumeClaimTemplates (map the store as kind: StatefulSet); "
            "a store whose data lives in its pods (memory, emptyDir) loses it by a crash"
        )


def _try_evictions(call: Call, api: KubeApi, pods: Sequence[Mapping[str, Any]]) -> None:
    """Raise `FaultError` when the API server would refuse a pod's eviction (a dry run of each: a
    budget allowing no disruption refuses it), before the claims are deleted. Each is tried alone:
    a budget allowing fewer disruptions than there are pods still refuses a later one for real."""
    for pod in pods:
        ref = _ref(call, pod)
        try:
            api.evict(str(ref.namespace), ref.name, dry_run=True)
        except TargetError as exc:
            raise FaultError(f"{ref}: its eviction would be refused, so no claim was deleted: {exc}") from exc


def _controller(pod: Mapping[str, Any]) -> Mapping[str, Any] | None:
    owners = _read(pod, ("metadata", "ownerReferences"))
    if not isinstance(owners, list):
        return None
    return next((o for o in owners if isinstance(o, Mapping) and o.get("controller")), None)


def _fields(
    ref: ObjectRef, obj: Mapping[str, Any], changes: Sequence[FieldChange], holds: Holds
) -> list[FieldState]:
    out: list[FieldState] = []
    for change in changes:
        current = _read(obj, change.path)
        present = current is not _ABSENT
        match change.mode:
            case ChangeMode.SET | ChangeMode.COPY:
                if change.mode is ChangeMode.COPY:
                    after = _read(obj, change.source)
                    if after is _ABSENT or after is None:
                        raise FaultError(
                            f"{ref} has no {'.'.join(change.source)} to pin {'.'.join(change.path)} to"
                        )
                else:
                    after = change.value
                held = holds.original(ref, change.path)
                if held is not None:
                    present, current = held
                out.append(
                    FieldState(
                        change.path, ChangeMode.SET.value, present, current if present else None, after
                    )
                )
            case ChangeMode.APPEND:
                if not isinstance(current, str):
                    raise FaultError(f"{ref} has no text at {'.'.join(change.path)} to append to")
                held = holds.original(ref, change.path)
                original = current if held is None else held[1]
                out.append(
                    FieldState(change.path, ChangeMode.APPEND.value, True, original, str(change.value))
                )
    return out


def expand(call: Call, api: KubeApi, holds: Holds) -> list[Change]:
    """The changes `call` makes, with the prior state of everything it changes. Reads only.
    Raises `FaultError` when it must not or cannot go ahead."""
    changes: list[Change] = []
    try:
        if call.verb is Verb.CREATE:
            assert call.name is not None and call.body is not None
            ref = ObjectRef(call.context, call.resource, call.namespace, call.name)
            changes.append(Change(ChangeOp.CREATE, ref, body=dict(call.body)))
        elif call.verb is Verb.PATCH:
            if call.name is not None:
                found = api.get(call.resource, call.namespace, call.name)
                if found is None:
                    where = f"{call.namespace}/" if call.namespace else ""
                    raise FaultError(
                        f"{call.resource.kind} {where}{call.name} does not exist in {call.context}"
                    )
                objects = [found]
            elif call.scaling is not None:
                for hpa, note in _autoscalers(call, api):
                    ref = _ref(call, hpa)
                    left_alone = note.startswith("idle")
                    fields = () if left_alone else tuple(_fields(ref, hpa, call.changes, holds))
                    changes.append(Change(ChangeOp.PATCH, ref, fields, note=note))
                objects = []
            else:
                objects = api.list(call.resource.parent, call.namespace, dict(call.labels))
            for obj in objects:
                ref = _ref(call, obj)
                changes.append(Change(ChangeOp.PATCH, ref, tuple(_fields(ref, obj, call.changes, holds))))
        elif call.resource == PVCS and call.via_pods:
            pods = _pods(call, api)
            for pod in pods:
                _check_claims_come_back(_ref(call, pod), pod)
            if call.evict_first:
                _try_evictions(call, api, [p for p in pods if _claims_of(p)])
            for pod in pods:
                for claim in _claims_of(pod):
                    found = api.get(PVCS, call.namespace, claim)
                    if found is not None:
                        changes.append(
                            Change(ChangeOp.DELETE, _ref(call, found), body=_kept(found), note="irreversible")
                        )
        elif call.resource == PODS:
            for pod in _pods(call, api):
                ref = _ref(call, pod)
                owner = _controller(pod)
                if owner is None:
                    raise FaultError(
                        f"{ref} has no controller: deleted, it would not come back; bascule deletes only "
                        "pods that a Deployment, StatefulSet, ReplicaSet or DaemonSet recreates"
                    )
                note = f"recreated by {owner.get('kind')} {owner.get('name')}"
                if call.evict:
                    ref = ObjectRef(ref.context, POD_EVICTION, ref.namespace, ref.name)
                changes.append(Change(ChangeOp.DELETE, ref, body=_kept(pod), note=note))
        else:
            raise FaultError(f"no adapter deletes {call.resource.kind} by selector")
    except TargetError as exc:
        raise FaultError(str(exc)) from exc
    if call.required and not changes:
        raise FaultError(
            f"{call.describe()}: matched nothing, so the fault would do nothing (check the mapping)"
        )
    return _unique(changes)


def _unique(changes: list[Change]) -> list[Change]:
    seen: set[tuple[ChangeOp, ObjectRef]] = set()
    out: list[Change] = []
    for change in changes:
        if (change.op, change.ref) not in seen:
            seen.add((change.op, change.ref))
            out.append(change)
    return out


def _kept(obj: Mapping[str, Any]) -> dict[str, Any]:
    """What the ledger keeps of a deleted object, for the report: its identity and where it ran."""
    meta = obj.get("metadata") or {}
    kept: dict[str, Any] = {
        "metadata": {
            k: meta[k] for k in ("name", "namespace", "uid", "labels", "ownerReferences") if k in meta
        }
    }
    node = _read(obj, ("spec", "nodeName"))
    if isinstance(node, str):
        kept["spec"] = {"nodeName": node}
    return kept


def carry_out(change: Change, apis: Mapping[str, KubeApi], holds: Holds | None = None) -> str:
    """Make one recorded change; the effect line for the journal. A text appended to is composed
    from its original and what every fault in `holds` appends (this one's included: the target
    takes its holds before it makes the change). Raises `TargetError`."""
    ref = change.ref
    api = apis[ref.context]
    match change.op:
        case ChangeOp.CREATE:
            assert change.body is not None
            api.create(ref.resource, ref.namespace, change.body)
            return f"create {ref}"
        case ChangeOp.DELETE if ref.resource == POD_EVICTION:
            assert ref.namespace is not None
            evicted = api.evict(ref.namespace, ref.name)
            return f"evict {ref}" + ("" if evicted else " (already gone)")
        case ChangeOp.DELETE:
            gone = api.delete(ref.resource, ref.namespace, ref.name)
            return f"delete {ref}" + ("" if gone else " (already gone)")
        case ChangeOp.PATCH:
            if not change.fields:
                return f"{ref} left alone: {change.note}"
            patch: dict[str, Any] = {}
            shown: list[str] = []
            for f in change.fields:
                if f.mode == ChangeMode.APPEND.value:
                    texts = [t for _, t in holds.appended(ref, f.path)] if holds is not None else []
                    _merge(patch, _nested(f.path, corefile_with(str(f.before), texts or [str(f.after)])))
                    shown.append(f"{'.'.join(f.path)} += {str(f.after).count(chr(10))} line(s)")
                else:
                    _merge(patch, _nested(f.path, f.after))
                    shown.append(
                        f"{'.'.join(f.path)}: {_shown(f.before_present, f.before)} → {_shown(True, f.after)}"
                    )
            if patch:
                api.patch(ref.resource, ref.namespace, ref.name, patch)
            noted = f" ({change.note})" if change.note else ""
            return f"patch {ref}: {', '.join(shown)}{noted}"


def undo(change: Change, apis: Mapping[str, KubeApi], holds: Holds, key: str, run_id: str) -> str | None:
    """Revert one change; the effect line, or None when there was nothing to revert. Raises
    `TargetError` when the cluster refused or could not be reached."""
    ref = change.ref
    api = apis[ref.context]
    match change.op:
        case ChangeOp.DELETE if ref.resource == PVCS:
            return finish_claim(change, api)
        case ChangeOp.DELETE:
            return None
        case ChangeOp.CREATE:
            found = api.get(ref.resource, ref.namespace, ref.name)
            if found is None:
                return f"{ref} was already gone"
            labels = _read(found, ("metadata", "labels"))
            if not isinstance(labels, Mapping) or labels.get(RUN_LABEL) != run_id:
                return f"{ref} does not carry {RUN_LABEL}={run_id}: left alone"
            api.delete(ref.resource, ref.namespace, ref.name)
            return deleted_line(ref)
        case ChangeOp.PATCH:
            return _undo_patch(change, api, holds, key)


def finish_claim(change: Change, api: KubeApi) -> str | None:
    """A volume claim the fault deleted, still held by a pod that uses it: delete that pod too, as the
    fault meant to; the effect line, or None when the claim is gone (or made again since) or no
    running pod holds it.

    data-loss deletes a store's claims, then its pods: the claims first, since a pod deleted first
    would be made again at once on its old claim. The API server only marks a claim a pod uses (its
    ``kubernetes.io/pvc-protection`` finalizer); the claim goes once the pod does. A fault stopped
    between the two — killed, or a pod's eviction refused by its disruption budget — leaves claims
    that nothing can bring back and that go at their pods' next restart, whenever that is: the data
    lost then, long after the run. Deleting the pods now ends it while the fault is recorded, and
    their controller makes them again on new claims."""
    ref = change.ref
    found = api.get(PVCS, ref.namespace, ref.name)
    if found is None or _read(found, ("metadata", "deletionTimestamp")) in (_ABSENT, None):
        return None
    uid = _read(change.body or {}, ("metadata", "uid"))
    if uid is not _ABSENT and _read(found, ("metadata", "uid")) != uid:
        return None
    holding = [
        pod
        for pod in api.list(PODS, ref.namespace)
        if _read(pod, ("metadata", "deletionTimestamp")) in (_ABSENT, None) and ref.name in _claims_of(pod)
    ]
    if not holding:
        return None
    by_name = {str(_read(pod, ("metadata", "name"))): pod for pod in holding}
    names = sorted(by_name)
    orphans = [name for name in names if _controller(by_name[name]) is None]
    if orphans:
        return (
            f"{ref} {CLAIM_HELD} {', '.join(orphans)}, which no controller makes again: left alone "
            "(the claim goes, and its data, when they do)"
        )
    for name in names:
        api.delete(PODS, ref.namespace, name)
    return (
        f"{ref} {CLAIM_HELD} {', '.join(names)}: deleted them too, as the fault meant (the claim goes "
        "with them; their controller makes them again on a new claim)"
    )


def deleted_line(ref: ObjectRef) -> str:
    """The effect line of `undo` when it deleted an object bascule created (one to wait for)."""
    return f"delete {ref}"


def wait_gone(
    refs: Sequence[ObjectRef], apis: Mapping[str, KubeApi], within: float = GONE_WITHIN_S
) -> list[tuple[ObjectRef, list[str]]]:
    """Poll (GET) until every object of `refs` is gone (404), for at most `within` seconds; those
    still there, each with the finalizers that hold it. A DELETE the API server accepted removes an
    object with finalizers only once its controller has removed them — for Chaos Mesh, once the
    fault is lifted. Raises `TargetError` when a cluster cannot be reached."""
    deadline = time.monotonic() + within
    pause = 0.05
    left: list[tuple[ObjectRef, list[str]]] = [(ref, []) for ref in refs]
    while left:
        still: list[tuple[ObjectRef, list[str]]] = []
        for ref, _ in left:
            found = apis[ref.context].get(ref.resource, ref.namespace, ref.name)
            if found is not None:
                finalizers = _read(found, ("metadata", "finalizers"))
                still.append((ref, [str(f) for f in finalizers] if isinstance(finalizers, list) else []))
        left = still
        if not left or time.monotonic() >= deadline:
            break
        time.sleep(min(pause, max(0.0, deadline - time.monotonic())))
        pause = min(pause * 2, 0.5)
    return left


def _without(text: str, original: str, texts: Sequence[tuple[str, str]], key: str) -> str | None:
    """`text` (a field faults append to) without what `key` appended: composed again from the
    original and the `texts` of the others — when `text` is what the faults in force made of it,
    or already what it should become (a change never made, a revert repeated); else the section
    they made is replaced where it is found. None when it is not found (edited since)."""
    now = corefile_with(original, [t for _, t in texts])
    after = corefile_with(original, [t for k, t in texts if k != key])
    if text in (now, after):
        return after
    section = now[len(original) :] if now.startswith(original) else ""
    if section and section in text:
        return text.replace(section, after[len(original) :], 1)
    mine = dict(texts).get(key, "")
    return text.replace(mine, "", 1) if mine and mine in text else None


def _undo_patch(change: Change, api: KubeApi, holds: Holds, key: str) -> str | None:
    ref = change.ref
    patch: dict[str, Any] = {}
    shown: list[str] = []
    current: Mapping[str, Any] | None = None
    for f in change.fields:
        where = ".".join(f.path)
        if f.mode == ChangeMode.APPEND.value:
            if current is None:
                current = api.get(ref.resource, ref.namespace, ref.name)
                if current is None:
                    return f"{ref} is gone: nothing to restore"
            text = _read(current, f.path)
            texts = holds.appended(ref, f.path) or [(key, str(f.after))]
            held = holds.original(ref, f.path)  # the oldest record's, for ledgers written before
            original = str(f.before if held is None else held[1])
            holds.release(key, ref, f.path)
            if not isinstance(text, str):
                shown.append(f"{where} is gone: left alone")
                continue
            restored = _without(text, original, texts, key)
            if restored is None:
                shown.append(f"{where} no longer holds the appended text: left alone")
                continue
            if restored != text:
                _merge(patch, _nested(f.path, restored))
            others = [k for k, _ in texts if k != key]
            if others:
                shown.append(f"{where}: what {key} appended removed, still held by {', '.join(others)}")
            else:
                shown.append(f"{where} restored ({len(restored)} bytes)")
        else:
            others = holds.release(key, ref, f.path)
            if others:
                shown.append(f"{where} still held by {', '.join(others)}")
                continue
            _merge(patch, _nested(f.path, f.before if f.before_present else None))
            shown.append(f"{where} → {_shown(f.before_present, f.before)}")
    if patch:
        try:
            api.patch(ref.resource, ref.namespace, ref.name, patch)
        except TargetError:
            if api.get(ref.resource, ref.namespace, ref.name) is None:
                return f"{ref} is gone: nothing to restore"
            raise
    return f"patch {ref}: {', '.join(shown)}" if shown else None
