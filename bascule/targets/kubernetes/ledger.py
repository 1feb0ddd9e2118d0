"""The Kubernetes undo ledger: an append-only JSONL file in the run directory that outlives the run.

Same discipline as the local target's (`bascule.targets.local.ledger`): one record a line, one
``write`` on an ``O_APPEND`` descriptor, fsynced before `append` returns — and a fault's record,
which holds the prior state of every object it is about to change, before the first change:

    {"type": "run", "owner": {…}, "run_id": "1a2b3c", "design": "…", "kubeconfig": "…",
     "contexts": ["aws-east", "scw-par"], "at": …}
    {"type": "fault", "key": "p0", "kind": "control-plane", "phase": 0, "cycle": null, "by": {…},
     "changes": [{"op": "patch", "ref": {…Node aws-east/node-1}, "fields": [{"path": ["spec",
     "unschedulable"], "mode": "set", "before_present": false, "after": true}]}, …], "at": …}
    {"type": "reverted", "key": "p0", "by": {…}, "at": …, "note": ""}
    {"type": "closed", "at": …}  ·  {"type": "recovered", "at": …, "summary": "…"}

A field's ``before`` is the value it had before the first fault in force that changed it (a second
fault on the same field records the same original), so whichever fault is reverted last — or
`bascule recover`, from any subset of records — restores the original. `parse_kube_ledger` is pure;
a torn last line is counted in ``damaged`` and otherwise ignored (its changes had not begun).
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any, Final

from bascule.targets.kubernetes.resources import Resource
from bascule.targets.ledgerfile import LedgerFile, parse_lines
from bascule.targets.local.ledger import Owner, dump_owner, parse_owner

__all__ = [
    "KUBE_LEDGER_FILE",
    "Change",
    "ChangeOp",
    "FieldState",
    "KubeClosed",
    "KubeFault",
    "KubeLedger",
    "KubeLedgerState",
    "KubeRecord",
    "KubeRecovered",
    "KubeReverted",
    "KubeRun",
    "ObjectRef",
    "dump_kube_record",
    "parse_kube_ledger",
    "parse_kube_record",
    "read_kube_ledger",
]

KUBE_LEDGER_FILE: Final = "kubernetes-ledger.jsonl"


class ChangeOp(StrEnum):
    PATCH = "patch"
    CREATE = "create"
    DELETE = "delete"


@dataclass(frozen=True, order=True)
class ObjectRef:
    """One object in one cluster."""

    context: str
    resource: Resource
    namespace: str | None
    name: str

    def __str__(self) -> str:
        where = f"{self.namespace}/" if self.namespace else ""
        return f"{self.resource.kind} {where}{self.name} [{self.context}]"


@dataclass(frozen=True)
class FieldState:
    """One field a patch changes. ``mode`` is ``set`` (``after`` is the value set, ``before`` the
    original) or ``append`` (``after`` is the text appended, ``before`` the text before the first
    fault in force appended to it: the field is that text with what every fault in force appends,
    each zone once — `calls.corefile_with`)."""

    path: tuple[str, ...]
    mode: str
    before_present: bool
    before: Any
    after: Any


@dataclass(frozen=True)
class Change:
    op: ChangeOp
    ref: ObjectRef
    fields: tuple[FieldState, ...] = ()
    body: Mapping[str, Any] | None = None
    """create: the object as sent; delete: what it was (kept for the report, never re-created)."""
    note: str = ""


@dataclass(frozen=True)
class KubeRun:
    owner: Owner
    run_id: str
    design: str
    kubeconfig: str | None
    contexts: tuple[str, ...]
    at: float


@dataclass(frozen=True)
class KubeFault:
    key: str
    kind: str
    phase: int | None
    cycle: int | None
    changes: tuple[Change, ...]
    by: Owner
    at: float


@dataclass(frozen=True)
class KubeReverted:
    key: str
    by: Owner
    at: float
    note: str = ""


@dataclass(frozen=True)
class KubeClosed:
    at: float


@dataclass(frozen=True)
class KubeRecovered:
    at: float
    summary: str = ""


KubeRecord = KubeRun | KubeFault | KubeReverted | KubeClosed | KubeRecovered


# -- pure: records to and from JSON ---------------------------------------------------------------


def _dump_resource(resource: Resource) -> dict[str, Any]:
    return {
        "group": resource.group,
        "version": resource.version,
        "plural": resource.plural,
        "kind": resource.kind,
        "namespaced": resource.namespaced,
    } | ({"subresource": resource.subresource} if resource.subresource else {})


def _dump_change(change: Change) -> dict[str, Any]:
    ref = change.ref
    data: dict[str, Any] = {
        "op": change.op.value,
        "ref": {
            "context": ref.context,
            "resource": _dump_resource(ref.resource),
            "namespace": ref.namespace,
            "name": ref.name,
        },
        "fields": [
            {
                "path": list(f.path),
                "mode": f.mode,
                "before_present": f.before_present,
                "before": f.before,
                "after": f.after,
            }
            for f in change.fields
        ],
    }
    if change.body is not None:
        data["body"] = dict(change.body)
    if change.note:
        data["note"] = change.note
    return data


def dump_kube_record(record: KubeRecord) -> str:
    """One line of JSON, without the newline."""
    data: dict[str, Any]
    match record:
        case KubeRun():
            data = {
                "type": "run",
                "owner": dump_owner(record.owner),
                "run_id": record.run_id,
                "design": record.design,
                "kubeconfig": record.kubeconfig,
                "contexts": list(record.contexts),
                "at": record.at,
            }
        case KubeFault():
            data = {
                "type": "fault",
                "key": record.key,
                "kind": record.kind,
                "phase": record.phase,
                "cycle": record.cycle,
                "changes": [_dump_change(c) for c in record.changes],
                "by": dump_owner(record.by),
                "at": record.at,
            }
        case KubeReverted():
            data = {
                "type": "reverted",
                "key": record.key,
                "by": dump_owner(record.by),
                "at": record.at,
                "note": record.note,
            }
        case KubeClosed():
            data = {"type": "closed", "at": record.at}
        case KubeRecovered():
            data = {"type": "recovered", "at": record.at, "summary": record.summary}
    return json.dumps(data, separators=(",", ":"), sort_keys=True)


def _get(data: Mapping[str, Any], key: str, kind: type | tuple[type, ...]) -> Any:
    value = data.get(key)
    kinds = kind if isinstance(kind, tuple) else (kind,)
    if (isinstance(value, bool) and bool not in kinds) or not isinstance(value, kinds):
        raise ValueError(f"{key} has the wrong type: {value!r}")
    return value


def _load_resource(data: Any) -> Resource:
    if not isinstance(data, Mapping):
        raise ValueError("a resource is a mapping")
    return Resource(
        _get(data, "group", str),
        _get(data, "version", str),
        _get(data, "plural", str),
        _get(data, "kind", str),
        _get(data, "namespaced", bool),
        str(data.get("subresource") or ""),
    )


def _load_change(data: Any) -> Change:
    if not isinstance(data, Mapping):
        raise ValueError("a change is a mapping")
    ref = data.get("ref")
    if not isinstance(ref, Mapping):
        raise ValueError("a change needs a ref")
    namespace = ref.get("namespace")
    if namespace is not None and not isinstance(namespace, str):
        raise ValueError("namespace must be a string")
    fields = []
    for f in _get(data, "fields", list):
        if not isinstance(f, Mapping):
            raise ValueError("a field change is a mapping")
        fields.append(
            FieldState(
                tuple(str(p) for p in _get(f, "path", list)),
                _get(f, "mode", str),
                _get(f, "before_present", bool),
                f.get("before"),
                f.get("after"),
            )
        )
    body = data.get("body")
    return Change(
        ChangeOp(_get(data, "op", str)),
        ObjectRef(
            _get(ref, "context", str), _load_resource(ref.get("resource")), namespace, _get(ref, "name", str)
        ),
        tuple(fields),
        body if isinstance(body, Mapping) else None,
        str(data.get("note", "")),
    )


def _opt_int(data: Mapping[str, Any], key: str) -> int | None:
    return None if data.get(key) is None else int(_get(data, key, int))


def parse_kube_record(line: str) -> KubeRecord:
    """Raises `ValueError` for a line that is not a record."""
    data = json.loads(line)
    if not isinstance(data, dict):
        raise ValueError("a ledger record is a JSON object")
    at = float(_get(data, "at", (int, float)))
    match data.get("type"):
        case "run":
            kubeconfig = data.get("kubeconfig")
            return KubeRun(
                parse_owner(data.get("owner")),
                _get(data, "run_id", str),
                _get(data, "design", str),
                kubeconfig if isinstance(kubeconfig, str) else None,
                tuple(str(c) for c in _get(data, "contexts", list)),
                at,
            )
        case "fault":
            return KubeFault(
                _get(data, "key", str),
                _get(data, "kind", str),
                _opt_int(data, "phase"),
                _opt_int(data, "cycle"),
                tuple(_load_change(c) for c in _get(data, "changes", list)),
                parse_owner(data.get("by")),
                at,
            )
        case "reverted":
            return KubeReverted(
                _get(data, "key", str), parse_owner(data.get("by")), at, str(data.get("note", ""))
            )
        case "closed":
            return KubeClosed(at)
        case "recovered":
            return KubeRecovered(at, str(data.get("summary", "")))
        case other:
            raise ValueError(f"unknown ledger record type {other!r}")


@dataclass(frozen=True)
class KubeLedgerState:
    run: KubeRun | None
    applied: tuple[KubeFault, ...]
    active: tuple[KubeFault, ...]
    """Faults recorded and not reverted, in the order recorded."""
    closed: bool
    recovered: bool
    damaged: int = 0

    @property
    def finished(self) -> bool:
        return self.closed or self.recovered


def parse_kube_ledger(text: str) -> KubeLedgerState:
    run: KubeRun | None = None
    applied: list[KubeFault] = []
    active: dict[str, KubeFault] = {}
    closed = recovered = False
    records, damaged = parse_lines(text, parse_kube_record, (ValueError, KeyError, TypeError))
    for record in records:
        match record:
            case KubeRun():
                run = record
            case KubeFault():
                applied.append(record)
                active[record.key] = record
            case KubeReverted():
                active.pop(record.key, None)
            case KubeClosed():
                closed = True
            case KubeRecovered():
                recovered = True
    return KubeLedgerState(run, tuple(applied), tuple(active.values()), closed, recovered, damaged)


# -- I/O ---------------------------------------------------------------------------------------------


def read_kube_ledger(path: Path) -> KubeLedgerState:
    return parse_kube_ledger(KubeLedger.read_text(path))


class KubeLedger(LedgerFile):
    """Appends records, each fsynced before `append` returns. Thread-safe."""

    what = "Kubernetes undo ledger"

    @classmethod
    def create(
        cls, path: Path, *, run_id: str, design: str, kubeconfig: str | None, contexts: tuple[str, ...]
    ) -> KubeLedger:
        """Start the ledger of a new run. A previous ledger there is replaced only if its run ended;
        otherwise `TargetError` says to stop it or run `bascule recover` first."""
        return cls._create(
            path,
            _previous,
            lambda ledger: ledger.append(
                KubeRun(Owner.me(), run_id, design, kubeconfig, contexts, time.time())
            ),
        )

    def append(self, record: KubeRecord) -> None:
        self.append_line(dump_kube_record(record))

    def read(self) -> KubeLedgerState:
        return read_kube_ledger(self.path)


def _previous(path: Path) -> tuple[bool, Owner | None]:
    state = read_kube_ledger(path)
    return state.finished, state.run.owner if state.run else None
