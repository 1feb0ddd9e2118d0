"""A fake Kubernetes API server for the Kubernetes target's tests: kmock's emulator over real HTTP
on 127.0.0.1, extended where bascule needs a real server's behaviour.

kmock stores objects and serves create, get, list, merge-patch and delete, but has no controllers
and ignores label selectors. `Emulator` adds what the adapters rely on: ``labelSelector`` and
``fieldSelector`` on lists, and the server-managed metadata a real API server fills (uid,
resourceVersion, creationTimestamp, generation). `Cluster` runs one in a thread of its own, seeds
objects, snapshots them for deep comparison, and tells which requests reached it.
"""

from __future__ import annotations

import asyncio
import copy
import itertools
import re
import threading
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp.web
import kmock
import yaml
from kmock._internal import rendering

CORE = ["v1/pods", "v1/nodes", "v1/configmaps", "v1/persistentvolumeclaims"]
KINDS = {
    "v1/pods": ("Pod", True),
    "v1/nodes": ("Node", False),
    "v1/configmaps": ("ConfigMap", True),
    "v1/persistentvolumeclaims": ("PersistentVolumeClaim", True),
    "apps/v1/deployments": ("Deployment", True),
    "apps/v1/statefulsets": ("StatefulSet", True),
    "autoscaling/v2/horizontalpodautoscalers": ("HorizontalPodAutoscaler", True),
    "networking.k8s.io/v1/networkpolicies": ("NetworkPolicy", True),
}
CHAOS = {
    "chaos-mesh.org/v1alpha1/networkchaos": ("NetworkChaos", True),
    "chaos-mesh.org/v1alpha1/httpchaos": ("HTTPChaos", True),
    "chaos-mesh.org/v1alpha1/dnschaos": ("DNSChaos", True),
    "chaos-mesh.org/v1alpha1/podchaos": ("PodChaos", True),
}
POLICY = {"policy/v1/poddisruptionbudgets": ("PodDisruptionBudget", True)}
"""Served, never changed by bascule: read by ``plan --discover`` (which budgets a deletion breaks)."""
SERVER_MANAGED = ("resourceVersion", "generation", "managedFields")
"""Metadata a real server changes on every write: left out of deep comparisons."""

_TERM = re.compile(
    r"\s*(!?)([A-Za-z0-9_./-]+)\s*(?:(==|=|!=)\s*([A-Za-z0-9_.-]*)|\s+(in|notin)\s*\(([^)]*)\))?\s*"
)


def matches_selector(labels: Mapping[str, str], selector: str) -> bool:
    """Kubernetes label-selector semantics: ``a=b``, ``a!=b``, ``a in (x,y)``, ``a notin (x)``,
    ``a``, ``!a``."""
    terms = re.findall(r"[^,(]+(?:\([^)]*\))?", selector)
    for raw in terms:
        term = raw.strip()
        if not term:
            continue
        found = _TERM.fullmatch(term)
        if found is None:
            raise ValueError(f"cannot parse selector term {term!r}")
        negated, key, op, value, set_op, values = found.groups()
        present = key in labels
        if set_op is not None:
            choices = {v.strip() for v in values.split(",") if v.strip()}
            ok = (
                (present and labels[key] in choices)
                if set_op == "in"
                else not (present and labels[key] in choices)
            )
        elif op in ("=", "=="):
            ok = present and labels[key] == value
        elif op == "!=":
            ok = not (present and labels[key] == value)
        else:
            ok = not present if negated else present
        if not ok:
            return False
    return True


def _field(obj: Mapping[str, Any], path: str) -> Any:
    current: Any = obj
    for part in path.split("."):
        if not isinstance(current, Mapping):
            return None
        current = current.get(part)
    return current


class Emulator(kmock.KubernetesEmulator):
    """kmock's emulator with label/field selectors, server-managed metadata, and authorization:
    a request whose (group, resource, verb) is not in ``allowed`` (when set) or is ``forbidden``
    is answered 403, as an API server enforcing RBAC does."""

    def __attrs_post_init__(self) -> None:
        super().__attrs_post_init__()
        self.versions = itertools.count(1000)
        self.allowed: set[Rule] | None = None
        self.forbidden: set[tuple[str, str, str]] = set()

    def stamp(self, obj: dict[str, Any], namespace: str | None) -> dict[str, Any]:
        meta = obj.setdefault("metadata", {})
        if namespace is not None:
            meta.setdefault("namespace", namespace)
        meta.setdefault("uid", str(uuid.uuid4()))
        meta.setdefault("creationTimestamp", "2026-01-01T00:00:00Z")
        meta["resourceVersion"] = str(next(self.versions))
        if "spec" in obj:
            meta.setdefault("generation", 1)
        return obj

    async def _handle(self, request: rendering.Request) -> aiohttp.web.StreamResponse:
        needed = request_permission(str(request.method.value), request.url.path)
        if needed is not None:
            group, resource, verb = needed
            allowed = self.allowed is None or any(
                rule.allows(group, resource, verb, request.namespace, request.name) for rule in self.allowed
            )
            if needed in self.forbidden or not allowed:
                raise kmock.KubernetesError(403, "Forbidden", f"cannot {verb} {resource}.{group or 'core'}")
        if request.resource is not None and isinstance(request.data, dict):
            if request.action == kmock.action.CREATE:
                self.stamp(request.data, request.namespace)
            elif request.action == kmock.action.UPDATE:
                meta = request.data.setdefault("metadata", {})
                meta["resourceVersion"] = str(next(self.versions))
                if "spec" in request.data:
                    key = (request.resource, request.namespace, request.name or "")
                    # ObjectsArray is a mapping without .get
                    current = self.objects[key] if key in self.objects else None  # noqa: SIM401
                    generation = 1
                    if current is not None and not current.deleted:
                        generation = current.raw.get("metadata", {}).get("generation", 1)
                    meta["generation"] = generation + 1
        return await super()._handle(request)

    async def _serve_list(self, request: rendering.Request) -> rendering.Payload:
        answer = await super()._serve_list(request)
        assert isinstance(answer, dict)
        labels = request.params.get("labelSelector", "")
        fields = request.params.get("fieldSelector", "")
        items = [
            item
            for item in answer["items"]
            if matches_selector((item.get("metadata") or {}).get("labels") or {}, labels)
            and all(
                str(_field(item, key)) == value
                for key, _, value in (f.partition("=") for f in fields.split(",") if f)
            )
        ]
        assert request.resource is not None
        kind = {**KINDS, **POLICY, **CHAOS}.get(_key(request.resource), ("Object", True))[0]
        return {
            "kind": f"{kind}List",
            "metadata": {"resourceVersion": str(next(self.versions))},
            "items": items,
        }


def _key(resource: kmock.resource) -> str:
    group = f"{resource.group}/" if resource.group else ""
    return f"{group}{resource.version}/{resource.plural}"


class Cluster:
    """One emulated API server, served from a thread of its own until `stop`."""

    def __init__(self, name: str, *, chaos_mesh: bool = False) -> None:
        self.name = name
        self.chaos_mesh = chaos_mesh
        self.url = ""
        self._ready = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._emulator: Emulator | None = None
        self._failure: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name=f"kmock-{name}", daemon=True)

    @property
    def emulator(self) -> Emulator:
        assert self._emulator is not None
        return self._emulator

    def _run(self) -> None:
        try:
            asyncio.run(self._serve())
        except BaseException as exc:
            self._failure = exc
            self._ready.set()

    async def _serve(self) -> None:
        emulator = Emulator()
        for key, (kind, namespaced) in {**KINDS, **POLICY, **(CHAOS if self.chaos_mesh else {})}.items():
            verbs = {"get", "list", "create", "patch", "delete"}
            emulator.resources[key] = kmock.ResourceInfo(kind=kind, namespaced=namespaced, verbs=verbs)
        async with emulator, kmock.Server(emulator, host="127.0.0.1") as server:
            self._emulator = emulator
            self.url = str(server.url).rstrip("/")
            self._loop = asyncio.get_running_loop()
            self._stop = asyncio.Event()
            self._ready.set()
            await self._stop.wait()

    def start(self) -> Cluster:
        self._thread.start()
        if not self._ready.wait(10) or self._failure is not None:
            raise RuntimeError(f"the emulator {self.name} did not start: {self._failure}")
        return self

    def stop(self) -> None:
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(10)
        if self._failure is not None:
            raise RuntimeError(f"the emulator {self.name} failed: {self._failure}") from self._failure

    # -- objects --

    def seed(self, resource: str, obj: dict[str, Any]) -> dict[str, Any]:
        """Store `obj` as the server would have it after a create."""
        obj = copy.deepcopy(obj)
        kind, namespaced = KINDS.get(resource) or POLICY.get(resource) or CHAOS[resource]
        obj.setdefault("kind", kind)
        obj.setdefault("apiVersion", resource.rsplit("/", 1)[0])
        meta = obj["metadata"]
        self.emulator.stamp(obj, meta.get("namespace") if namespaced else None)
        self.emulator.objects[resource, meta.get("namespace") if namespaced else None, meta["name"]] = obj
        return obj

    def objects(self) -> dict[tuple[str, str | None, str], dict[str, Any]]:
        """Every live object, by (resource, namespace, name), as the server would serve it."""
        out: dict[tuple[str, str | None, str], dict[str, Any]] = {}
        for (resource, namespace, name), obj in list(self.emulator.objects.items()):
            if not obj.deleted:
                out[(_key(resource), namespace, name)] = copy.deepcopy(obj.raw)
        return out

    def get(self, resource: str, namespace: str | None, name: str) -> dict[str, Any] | None:
        return self.objects().get((resource, namespace, name))

    def requests(self) -> list[tuple[str, str, dict[str, str]]]:
        """Every request that reached the server so far: (method, path, query)."""
        return [(str(r.method.value), r.url.path, dict(r.params)) for r in list(self.emulator)]


def comparable(objects: Mapping[tuple[str, str | None, str], dict[str, Any]]) -> dict[Any, Any]:
    """`objects` without the metadata a server manages, for deep equality."""
    out: dict[Any, Any] = {}
    for key, obj in objects.items():
        copied = copy.deepcopy(obj)
        meta = copied.get("metadata") or {}
        for name in SERVER_MANAGED:
            meta.pop(name, None)
        out[key] = copied
    return out


def write_kubeconfig(path: Path, clusters: Mapping[str, Cluster]) -> Path:
    """A kubeconfig with one context per cluster, named after it, token auth."""
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": n, "cluster": {"server": c.url}} for n, c in clusters.items()],
        "users": [{"name": f"{n}-user", "user": {"token": f"token-{n}"}} for n in clusters],
        "contexts": [{"name": n, "context": {"cluster": n, "user": f"{n}-user"}} for n in clusters],
        "current-context": next(iter(clusters)),
    }
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    return path


@contextmanager
def running(*clusters: Cluster) -> Iterator[tuple[Cluster, ...]]:
    started: list[Cluster] = []
    try:
        for cluster in clusters:
            started.append(cluster.start())
        yield clusters
    finally:
        # Last started, first stopped: each kmock server hooks aiohttp's resolver process-wide and
        # unhooks it in reverse order.
        for cluster in reversed(started):
            cluster.stop()


@dataclass(frozen=True)
class Rule:
    """One thing an RBAC manifest grants: a verb on a resource, in a namespace (None: all) and on
    one named object (None: any)."""

    group: str
    resource: str
    verb: str
    namespace: str | None = None
    name: str | None = None

    def allows(self, group: str, resource: str, verb: str, namespace: str | None, name: str | None) -> bool:
        return (
            (self.group, self.resource, self.verb) == (group, resource, verb)
            and self.namespace in (None, namespace)
            and self.name in (None, name)
        )


def rbac_rules(path: Path) -> set[Rule]:
    """What an RBAC manifest grants once its bindings are applied: ClusterRoles bound cluster-wide
    grant everywhere, roles bound by a RoleBinding grant in its namespace."""
    documents = [d for d in yaml.safe_load_all(path.read_text(encoding="utf-8")) if d]
    roles = {
        (d["kind"], d["metadata"].get("namespace"), d["metadata"]["name"]): d
        for d in documents
        if d["kind"] in ("Role", "ClusterRole")
    }
    out: set[Rule] = set()
    for binding in documents:
        if binding["kind"] not in ("RoleBinding", "ClusterRoleBinding"):
            continue
        namespace = binding["metadata"].get("namespace") if binding["kind"] == "RoleBinding" else None
        ref = binding["roleRef"]
        role = roles[(ref["kind"], namespace if ref["kind"] == "Role" else None, ref["name"])]
        for rule in role["rules"]:
            for group in rule["apiGroups"]:
                for resource in rule["resources"]:
                    for verb in rule["verbs"]:
                        for name in rule.get("resourceNames") or [None]:
                            out.add(Rule(group, resource, verb, namespace, name))
    return out


_PATH = re.compile(r"^/(?:api/(?P<core>v1)|apis/(?P<group>[^/]+)/(?P<version>[^/]+))(?P<rest>/.*)?$")


def request_permission(method: str, path: str) -> tuple[str, str, str] | None:
    """(group, resource, verb) a request needs, or None for discovery (no resource)."""
    found = _PATH.match(path)
    if found is None:
        return None
    group = found["group"] or ""
    parts = [p for p in (found["rest"] or "").split("/") if p]
    if parts[:1] == ["namespaces"] and len(parts) >= 3:
        parts = parts[2:]
    if not parts:
        return None
    resource, name = parts[0], parts[1] if len(parts) > 1 else None
    if len(parts) > 2:  # a subresource: deployments/scale
        resource = f"{parts[0]}/{parts[2]}"
    verb = {
        "GET": "get" if name else "list",
        "POST": "create",
        "PATCH": "patch",
        "DELETE": "delete",
        "PUT": "update",
    }[method]
    return group, resource, verb
