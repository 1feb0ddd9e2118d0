"""``bascule deploy``: rendered manifests created or brought up to date in their clusters, with the
target's safety rules, and the files ``bascule render kubernetes`` writes.

    manifests = read_manifests("k8s/")                   # what render_manifests gave, from disk
    with connected(target_file) as apis:                  # one client per listed context
        report = deploy(manifests, apis, target=target_file, confirm=["prod-par"])

`deploy` first checks every object — its context listed in the target file and connected, its
namespace not protected, its context on this machine or confirmed (``--confirm CONTEXT`` or
``BASCULE_CONFIRM_CONTEXTS``) — then reads each from its cluster (GET) and refuses, before any
change, to touch an object that exists without ``app.kubernetes.io/managed-by: bascule``. Only then
does it write: a missing object is created (POST); an object bascule manages is merge-patched
(RFC 7386) to the rendered state when it differs, with the keys an earlier deploy set and this
one no longer renders removed (the keys it set are kept in the ``bascule.io/applied-keys``
annotation — the keys only, never the values, so no secret is copied into it); an object already
in the rendered state is left alone. A deploy repeated without change therefore makes no write.
An existing Namespace is never changed.

`write_manifests` writes one file per context (``<context>.yaml``) and the Secrets apart
(``<context>.secrets.yaml``, mode 0600, not to be committed); `read_manifests` reads them back.
"""

from __future__ import annotations

import json
import os
import re
from collections import Counter
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any, Final

import yaml

from bascule.errors import TargetError
from bascule.targets.kubernetes.cluster import KubeApi, unconfirmed
from bascule.targets.kubernetes.identity import confirmed_path, known_uid, read_confirmed, remember_flagged
from bascule.targets.kubernetes.manifests import MANAGED_BY, apply_order, object_context, render_yaml
from bascule.targets.kubernetes.mapping import ALWAYS_PROTECTED, TargetFile
from bascule.targets.kubernetes.resources import CONFIGMAPS, DEPLOYMENTS, HPAS, STATEFULSETS, Resource

__all__ = [
    "APPLIED_KEYS",
    "DEPLOY_KINDS",
    "DeployOutcome",
    "DeployReport",
    "DeployStep",
    "applied_keys",
    "check_manifests",
    "deploy",
    "merge_patch",
    "read_manifests",
    "render_deploy_report",
    "write_manifests",
]

APPLIED_KEYS: Final = "bascule.io/applied-keys"
"""Annotation on every deployed object: the tree of keys the deploy set (values left out)."""

NAMESPACES: Final = Resource("", "v1", "namespaces", "Namespace", False)
SECRETS: Final = Resource("", "v1", "secrets", "Secret", True)
SERVICES: Final = Resource("", "v1", "services", "Service", True)
SERVICE_EXPORTS: Final = Resource(
    "multicluster.x-k8s.io", "v1alpha1", "serviceexports", "ServiceExport", True
)

DEPLOY_KINDS: Final = {
    (r.api_version, r.kind): r
    for r in (NAMESPACES, SECRETS, CONFIGMAPS, SERVICES, SERVICE_EXPORTS, DEPLOYMENTS, STATEFULSETS, HPAS)
}
"""What `deploy` creates and updates: the kinds `render_manifests` produces, and nothing else."""

Json = dict[str, Any]


class DeployOutcome(StrEnum):
    CREATED = "created"
    UPDATED = "updated"
    UNCHANGED = "unchanged"
    EXISTS = "exists"
    """A Namespace that was already there: left as it is."""


@dataclass(frozen=True)
class DeployStep:
    context: str
    kind: str
    namespace: str | None
    name: str
    outcome: DeployOutcome

    def __str__(self) -> str:
        where = f"{self.namespace}/{self.name}" if self.namespace else self.name
        return f"{self.context}: {self.kind} {where} {self.outcome.value}"


@dataclass(frozen=True)
class DeployReport:
    steps: tuple[DeployStep, ...]

    def count(self, outcome: DeployOutcome) -> int:
        return sum(1 for s in self.steps if s.outcome is outcome)

    @property
    def writes(self) -> int:
        return self.count(DeployOutcome.CREATED) + self.count(DeployOutcome.UPDATED)


def render_deploy_report(report: DeployReport) -> str:
    """One line per object, then the totals."""
    lines = [str(step) for step in report.steps]
    totals = Counter(step.outcome.value for step in report.steps)
    lines.append(
        ", ".join(f"{totals[o.value]} {o.value}" for o in DeployOutcome if totals[o.value]) or "nothing"
    )
    return "\n".join(lines)


# -- pure helpers --------------------------------------------------------------------------------


def applied_keys(value: Any) -> Any:
    """The key tree of `value`: nested mappings keep their keys, anything else becomes 1."""
    if isinstance(value, Mapping):
        return {str(k): applied_keys(v) for k, v in value.items()}
    return 1


def _removed(previous: Any, desired: Any) -> Json:
    """``None`` for each key of `previous` (a key tree) that `desired` no longer has."""
    out: Json = {}
    if not isinstance(previous, Mapping) or not isinstance(desired, Mapping):
        return out
    for key, sub in previous.items():
        if key not in desired:
            out[key] = None
        elif isinstance(sub, Mapping) and isinstance(desired[key], Mapping):
            nested = _removed(sub, desired[key])
            if nested:
                out[key] = nested
    return out


def _merge(base: Json, extra: Mapping[str, Any]) -> Json:
    out = dict(base)
    for key, value in extra.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = _merge(dict(out[key]), value)
        else:
            out[key] = value
    return out


def _contains(live: Any, desired: Any) -> bool:
    """Whether `live` already holds everything `desired` says (the server may have added more)."""
    if isinstance(desired, Mapping):
        return isinstance(live, Mapping) and all(
            k in live and _contains(live[k], v) for k, v in desired.items()
        )
    if isinstance(desired, list):
        return (
            isinstance(live, list)
            and len(live) == len(desired)
            and all(_contains(a, b) for a, b in zip(live, desired, strict=True))
        )
    if isinstance(desired, bool) or isinstance(live, bool):
        return live is desired
    return bool(live == desired)


def _previous_keys(live: Mapping[str, Any]) -> Any:
    raw = ((live.get("metadata") or {}).get("annotations") or {}).get(APPLIED_KEYS)
    if not isinstance(raw, str):
        return {}
    try:
        return json.loads(raw)
    except ValueError:
        return {}


def _with_keys(obj: Mapping[str, Any]) -> Json:
    body: Json = json.loads(json.dumps(obj))
    keys = applied_keys({k: v for k, v in body.items() if k not in ("apiVersion", "kind")})
    meta = body.setdefault("metadata", {})
    meta.setdefault("annotations", {})[APPLIED_KEYS] = json.dumps(keys, sort_keys=True, separators=(",", ":"))
    return body


def merge_patch(live: Mapping[str, Any] | None, desired: Mapping[str, Any]) -> Json | None:
    """The JSON merge patch that brings `live` to `desired` — None when nothing is to change.

    `desired` is what this deploy sets (its applied-keys annotation included); keys that the last
    deploy set (the annotation on `live`) and `desired` lacks are removed."""
    if live is None:
        return dict(desired)
    removals = _removed(_previous_keys(live), desired)
    if not removals and _contains(live, desired):
        return None
    body = {k: v for k, v in desired.items() if k not in ("apiVersion", "kind")}
    return _merge(body, removals)


def _identity(obj: Mapping[str, Any]) -> tuple[str, str, str | None, str]:
    meta = obj.get("metadata") or {}
    return (object_context(obj) or "", str(obj.get("kind")), meta.get("namespace"), str(meta.get("name")))


def check_manifests(
    manifests: Sequence[Mapping[str, Any]],
    target: TargetFile,
    servers: Mapping[str, str],
    confirm: Collection[str] = (),
    environ: Mapping[str, str] | None = None,
    *,
    identities: Mapping[str, str | None] | None = None,
    remembered: Collection[str] = (),
    confirmation: bool = True,
) -> list[str]:
    """Why `manifests` must not be deployed, one problem per line (empty: they may). `servers` is
    the API server URL of each connected context, `identities` its cluster's identity
    (`identity.cluster_uid`; unknown when not given) and `remembered` the identities confirmed
    before; `confirmation` False leaves confirmation out (checked once the identities are read).
    Pure but for `environ` (``BASCULE_CONFIRM_CONTEXTS`` is read from ``os.environ`` when None)."""
    problems: list[str] = []
    protected = ALWAYS_PROTECTED | frozenset(target.protected_namespaces)
    seen: set[tuple[str, str, str | None, str]] = set()
    used: set[str] = set()
    for i, obj in enumerate(manifests):
        meta = obj.get("metadata")
        if not isinstance(meta, Mapping) or not isinstance(meta.get("name"), str):
            problems.append(f"object {i}: no metadata.name")
            continue
        context, kind, namespace, name = _identity(obj)
        shown = f"{kind} {namespace + '/' if namespace else ''}{name}"
        resource = DEPLOY_KINDS.get((str(obj.get("apiVersion")), kind))
        if resource is None:
            known = ", ".join(sorted(k for _, k in DEPLOY_KINDS))
            problems.append(f"{shown}: bascule deploys only what it renders ({known})")
            continue
        if resource.namespaced and not namespace:
            problems.append(f"{shown}: no metadata.namespace")
        if not context:
            problems.append(f"{shown}: no bascule.io/context annotation saying which cluster it is for")
            continue
        if context not in target.contexts:
            problems.append(
                f"{shown}: context {context!r} is not listed in the target file: bascule acts on listed "
                "contexts only"
            )
        elif context not in servers:
            problems.append(f"{shown}: context {context!r} is not connected")
        used.add(context)
        space = name if resource is NAMESPACES else namespace
        if space in protected:
            problems.append(f"{shown}: namespace {space!r} is protected: bascule never deploys there")
        key = (context, kind, namespace, name)
        if key in seen:
            problems.append(f"{shown}: given twice for context {context!r}")
        seen.add(key)
    if not confirmation:
        return problems
    uids = identities or {}
    waiting = unconfirmed(
        {c: uids.get(c) for c in sorted(used) if c in servers}, confirm, environ, remembered=remembered
    )
    for context in waiting:
        problems.append(
            f"context {context!r} ({servers[context]}) is not confirmed: bascule knows a cluster by "
            f"its identity (its kube-system namespace's UID), never by its address; confirm it once "
            f"with --confirm {context} (or BASCULE_CONFIRM_CONTEXTS={context})"
        )
    return problems


# -- effects -------------------------------------------------------------------------------------


def deploy(
    manifests: Sequence[Mapping[str, Any]],
    apis: Mapping[str, KubeApi],
    *,
    target: TargetFile,
    confirm: Collection[str] = (),
    environ: Mapping[str, str] | None = None,
) -> DeployReport:
    """Create or update every object of `manifests` in its context (see the module docstring).
    Raises `TargetError` — before any write — when a safety rule refuses them or an object exists
    that bascule does not manage; and on the first write the cluster refuses."""
    servers = {context: api.server for context, api in apis.items()}
    env = os.environ if environ is None else environ
    problems = check_manifests(manifests, target, servers, confirm, env, confirmation=False)
    if problems:
        raise TargetError("refusing to deploy:\n" + "\n".join(f"- {p}" for p in problems))
    used = sorted(c for c in {object_context(obj) for obj in manifests} if c is not None and c in apis)
    identities = {context: known_uid(apis[context]) for context in used}
    where = confirmed_path(env)
    remembered = set(read_confirmed(where))
    problems = check_manifests(
        manifests, target, servers, confirm, env, identities=identities, remembered=remembered
    )
    if problems:
        raise TargetError("refusing to deploy:\n" + "\n".join(f"- {p}" for p in problems))
    remember_flagged(where, apis, identities, confirm, env)
    plan: list[tuple[Mapping[str, Any], Resource, Json | None]] = []
    foreign: list[str] = []
    for obj in sorted(manifests, key=apply_order):
        context, kind, namespace, name = _identity(obj)
        resource = DEPLOY_KINDS[(str(obj["apiVersion"]), kind)]
        live = apis[context].get(resource, namespace, name)
        labels = ((live or {}).get("metadata") or {}).get("labels") or {}
        if live is not None and resource is not NAMESPACES and labels.get(MANAGED_BY[0]) != MANAGED_BY[1]:
            foreign.append(
                f"{context}: {kind} {namespace + '/' if namespace else ''}{name} exists and is not "
                f"managed by bascule (no {MANAGED_BY[0]}={MANAGED_BY[1]} label): left alone"
            )
        plan.append((obj, resource, live))
    if foreign:
        raise TargetError("refusing to deploy:\n" + "\n".join(f"- {p}" for p in foreign))
    steps: list[DeployStep] = []
    for obj, resource, live in plan:
        context, kind, namespace, name = _identity(obj)
        api = apis[context]
        body = _with_keys(obj)
        if live is None:
            api.create(resource, namespace, body)
            outcome = DeployOutcome.CREATED
        elif resource is NAMESPACES:
            outcome = DeployOutcome.EXISTS
        else:
            patch = merge_patch(live, body)
            if patch is None:
                outcome = DeployOutcome.UNCHANGED
            else:
                api.patch(resource, namespace, name, patch)
                outcome = DeployOutcome.UPDATED
        steps.append(DeployStep(context, kind, namespace, name, outcome))
    return DeployReport(tuple(steps))


_UNSAFE = re.compile(r"[^A-Za-z0-9._-]")


def _file_stem(context: str) -> str:
    # Context names may be ARNs (arn:aws:eks:…:cluster/x): the annotation, not the file, is the truth.
    return _UNSAFE.sub("_", context) or "_"


def write_manifests(manifests: Sequence[Mapping[str, Any]], out_dir: str | Path) -> list[Path]:
    """Write `manifests` under `out_dir`: ``<context>.yaml``, and ``<context>.secrets.yaml`` (mode
    0600) for the Secrets. Returns the files written."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    groups: dict[Path, list[Mapping[str, Any]]] = {}
    for obj in manifests:
        stem = _file_stem(object_context(obj) or "")
        suffix = ".secrets.yaml" if obj.get("kind") == "Secret" else ".yaml"
        groups.setdefault(out / f"{stem}{suffix}", []).append(obj)
    written: list[Path] = []
    for path, objects in groups.items():
        secret = path.name.endswith(".secrets.yaml")
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600 if secret else 0o644)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(render_yaml(objects))
        if secret:
            path.chmod(0o600)
        written.append(path)
    return written


def read_manifests(path: str | Path) -> list[Json]:
    """The objects of a manifest file, or of every ``*.yaml`` file in a directory, in apply order."""
    root = Path(path)
    if not root.exists():
        raise TargetError(f"no manifests at {root}: no such file or directory")
    files = sorted(root.glob("*.yaml")) if root.is_dir() else [root]
    out: list[Json] = []
    for file in files:
        try:
            documents = list(yaml.safe_load_all(file.read_text(encoding="utf-8")))
        except (OSError, yaml.YAMLError) as exc:
            raise TargetError(f"cannot read manifests from {file}: {exc}") from exc
        for document in documents:
            if document is None:
                continue
            if not isinstance(document, dict):
                raise TargetError(f"{file}: a document is not a Kubernetes object")
            out.append(document)
    if not out:
        raise TargetError(f"no manifests in {root}")
    return sorted(out, key=apply_order)
