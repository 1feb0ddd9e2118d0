"""Talking to clusters through the official ``kubernetes`` client: one `KubeApi` per listed context.

`KubeApi` is a thin typed shell over the client's `ApiClient`: get, list (with a label selector),
create, merge-patch, delete and discovery, on raw JSON objects (the typed models would drop
fields bascule must restore). Errors of the client are translated here, at the boundary, into
`TargetError`; a 404 on get or delete is an answer (None / False), not an error.

`connect` opens a client for each context the target file lists, and for nothing else;
`discover` asks each which Chaos Mesh resources it serves (GET only); `unconfirmed` says which
contexts reach a cluster that was not confirmed (``--confirm CONTEXT``, ``BASCULE_CONFIRM_CONTEXTS``,
or its identity confirmed before: `identity`).
"""

from __future__ import annotations

import ipaddress
import json
import os
from collections.abc import Collection, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Final
from urllib.parse import urlsplit

from kubernetes import client as k8s_client  # type: ignore[import-untyped]
from kubernetes import config as k8s_config

from bascule.errors import TargetError
from bascule.targets.kubernetes.calls import ClusterFacts, DisruptionFacts, disruption_facts
from bascule.targets.kubernetes.mapping import TargetFile, selector_text
from bascule.targets.kubernetes.resources import CHAOS_GROUP, CHAOS_VERSION, NODES, PDBS, PODS, Resource

__all__ = [
    "CONFIRM_ENV",
    "ApiCall",
    "KubeApi",
    "UnreachableError",
    "connect",
    "connect_contexts",
    "connected",
    "discover",
    "is_local_server",
    "unconfirmed",
]

CONFIRM_ENV: Final = "BASCULE_CONFIRM_CONTEXTS"
"""Comma-separated contexts confirmed for CI, as ``--confirm`` does on the command line."""

_TIMEOUT_S: Final = (5.0, 30.0)
_JSON: Final = "application/json"
_MERGE_PATCH: Final = "application/merge-patch+json"

Json = dict[str, Any]
ApiCall = tuple[str, str, str]
"""One request made: (HTTP method, path, context)."""


class UnreachableError(TargetError):
    """The cluster could not be reached (no answer at all, as opposed to an answer refusing)."""


class KubeApi:
    """One cluster (one context), spoken to through the official client."""

    def __init__(self, context: str, api_client: Any, kubeconfig: str | None = None) -> None:
        self.context = context
        self.kubeconfig = kubeconfig
        """The kubeconfig file the client was configured from (recorded in the ledger for recover)."""
        self._client = api_client
        self.made: list[ApiCall] = []
        """Every request made, in order (what a journal records)."""

    @property
    def server(self) -> str:
        return str(self._client.configuration.host)

    def _request(
        self,
        method: str,
        path: str,
        *,
        query: list[tuple[str, str]] | None = None,
        body: object = None,
        content_type: str = _JSON,
    ) -> Json | None:
        """The decoded answer; None for a 404. Raises `TargetError` for any other failure."""
        self.made.append((method, path, self.context))
        try:
            response = self._client.call_api(
                path,
                method,
                query_params=query or [],
                header_params={"Accept": _JSON, "Content-Type": content_type},
                body=body,
                auth_settings=["BearerToken"],
                _preload_content=False,
                _request_timeout=_TIMEOUT_S,
            )
        except k8s_client.ApiException as exc:
            if exc.status == 404:
                return None
            raise TargetError(
                f"{self.context}: {method} {path} failed: {exc.status} {exc.reason}: {_message(exc.body)}"
            ) from exc
        except Exception as exc:  # urllib3 and socket errors: the cluster cannot be reached
            raise UnreachableError(f"{self.context}: {method} {path} failed: {exc}") from exc
        data = response.data
        if not data:
            return {}
        try:
            decoded = json.loads(data)
        except ValueError as exc:
            raise TargetError(f"{self.context}: {method} {path}: the answer is not JSON") from exc
        if not isinstance(decoded, dict):
            raise TargetError(f"{self.context}: {method} {path}: expected a JSON object")
        return decoded

    def get(self, resource: Resource, namespace: str | None, name: str) -> Json | None:
        return self._request("GET", resource.path(namespace, name))

    def list(self, resource: Resource, namespace: str | None, labels: Mapping[str, str] = {}) -> list[Json]:
        """Objects of `resource` (in `namespace`, or everywhere when None) matching `labels`."""
        path = resource.path(namespace)
        query = [("labelSelector", selector_text(labels))] if labels else []
        answer = self._request("GET", path, query=query)
        if answer is None:
            raise TargetError(f"{self.context}: GET {path}: the cluster does not serve {resource.kind}")
        items = answer.get("items") or []
        return [item for item in items if isinstance(item, dict)]

    def create(self, resource: Resource, namespace: str | None, body: Mapping[str, Any]) -> Json:
        answer = self._request("POST", resource.path(namespace), body=dict(body))
        if answer is None:
            raise TargetError(f"{self.context}: the cluster does not serve {resource.kind}")
        return answer

    def patch(self, resource: Resource, namespace: str | None, name: str, patch: Mapping[str, Any]) -> Json:
        """A JSON merge patch (RFC 7386): ``None`` removes a field."""
        answer = self._request(
            "PATCH", resource.path(namespace, name), body=dict(patch), content_type=_MERGE_PATCH
        )
        if answer is None:
            raise TargetError(f"{self.context}: {resource.kind} {namespace or ''}/{name} is gone")
        return answer

    def delete(self, resource: Resource, namespace: str | None, name: str) -> bool:
        """False when there was nothing to delete."""
        return self._request("DELETE", resource.path(namespace, name)) is not None

    def evict(self, namespace: str, name: str, *, dry_run: bool = False) -> bool:
        """Evict a pod through the Eviction API (policy/v1); False when it was already gone. The API
        server refuses (429: `TargetError`) while a PodDisruptionBudget of the pod allows no
        disruption. A `dry_run` checks the budget and evicts nothing."""
        body = {
            "apiVersion": "policy/v1",
            "kind": "Eviction",
            "metadata": {"name": name, "namespace": namespace},
        }
        path = f"/api/v1/namespaces/{namespace}/pods/{name}/eviction"
        query = [("dryRun", "All")] if dry_run else None
        return self._request("POST", path, query=query, body=body) is not None

    def served(self, group: str, version: str) -> frozenset[str]:
        """Plural names of the resources the cluster serves in `group`/`version` (empty: none)."""
        answer = self._request("GET", f"/apis/{group}/{version}")
        if answer is None:
            return frozenset()
        resources = answer.get("resources") or []
        return frozenset(
            str(r["name"]) for r in resources if isinstance(r, dict) and "/" not in str(r.get("name", "/"))
        )

    def close(self) -> None:
        self._client.close()


def _message(body: object) -> str:
    if isinstance(body, bytes):
        body = body.decode(errors="replace")
    if isinstance(body, str):
        try:
            decoded = json.loads(body)
        except ValueError:
            return body[:200]
        if isinstance(decoded, dict) and "message" in decoded:
            return str(decoded["message"])[:300]
        return body[:200]
    return ""


def _kubeconfig(target: TargetFile, kubeconfig: str | Path | None) -> str:
    if kubeconfig is not None:
        return str(kubeconfig)
    if target.kubeconfig is not None:
        return os.path.expanduser(target.kubeconfig)
    return str(k8s_config.KUBE_CONFIG_DEFAULT_LOCATION)


def connect(target: TargetFile, kubeconfig: str | Path | None = None) -> dict[str, KubeApi]:
    """A client for each context the target file lists, read from `kubeconfig` (else the target
    file's, else ``$KUBECONFIG`` or ``~/.kube/config``). Raises `TargetError` when a listed context
    is not in the kubeconfig. Makes no request."""
    return connect_contexts(target.contexts, _kubeconfig(target, kubeconfig))


def connect_contexts(contexts: Sequence[str], kubeconfig: str | Path) -> dict[str, KubeApi]:
    """A client for each of `contexts` in the kubeconfig file `kubeconfig` (as `connect`)."""
    path = str(kubeconfig)
    try:
        known_contexts, _ = k8s_config.list_kube_config_contexts(config_file=path)
    except (k8s_config.ConfigException, OSError) as exc:
        raise TargetError(f"cannot read the kubeconfig {path}: {exc}") from exc
    known = {c["name"] for c in known_contexts or []}
    missing = [c for c in contexts if c not in known]
    if missing:
        raise TargetError(
            f"context(s) {', '.join(missing)} listed in the target file are not in {path} "
            f"(it has: {', '.join(sorted(known)) or 'none'})"
        )
    apis: dict[str, KubeApi] = {}
    try:
        for context in contexts:
            api_client = k8s_config.new_client_from_config(
                config_file=path, context=context, persist_config=False
            )
            apis[context] = KubeApi(context, api_client, path)
    except (k8s_config.ConfigException, OSError, ValueError) as exc:
        for api in apis.values():
            api.close()
        raise TargetError(f"cannot configure a client from {path}: {exc}") from exc
    return apis


@contextmanager
def connected(target: TargetFile, kubeconfig: str | Path | None = None) -> Iterator[dict[str, KubeApi]]:
    apis = connect(target, kubeconfig)
    try:
        yield apis
    finally:
        for api in apis.values():
            api.close()


def discover(apis: Mapping[str, KubeApi], namespaces: Sequence[str] = ()) -> dict[str, ClusterFacts]:
    """What each cluster serves and holds that the call plan depends on: Chaos Mesh's resources;
    and, when `namespaces` (those the target file maps) are given, their PodDisruptionBudgets and
    pods and the nodes, to tell which budgets an action would break. GET only."""
    out: dict[str, ClusterFacts] = {}
    for context, api in apis.items():
        disruption = None
        if namespaces:
            try:
                budgets = [b for ns in namespaces for b in api.list(PDBS, ns)]
                pods = [p for ns in namespaces for p in api.list(PODS, ns)]
                disruption = disruption_facts(namespaces, budgets, pods, api.list(NODES, None))
            except UnreachableError:
                raise
            except TargetError as exc:  # e.g. a 403: RBAC without `list poddisruptionbudgets`
                disruption = DisruptionFacts(tuple(namespaces), unread=str(exc))
        out[context] = ClusterFacts(chaos=api.served(CHAOS_GROUP, CHAOS_VERSION), disruption=disruption)
    return out


def is_local_server(url: str) -> bool:
    """Whether an API server URL is on loopback. Not proof that the cluster is this machine's
    (``kubectl proxy``, SSH tunnels and access proxies listen there): no longer a confirmation."""
    host = urlsplit(url).hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def unconfirmed(
    identities: Mapping[str, str | None],
    confirmed: Collection[str] = (),
    environ: Mapping[str, str] | None = None,
    *,
    remembered: Collection[str] = (),
) -> list[str]:
    """Contexts (context → the cluster's identity, `identity.cluster_uid`; None when unknown) that
    neither `confirmed` nor ``BASCULE_CONFIRM_CONTEXTS`` confirm and whose identity is not among
    those confirmed before (`remembered`). The server's address counts for nothing. A run must
    refuse to start while this is not empty."""
    env = os.environ if environ is None else environ
    from_env = {c.strip() for c in env.get(CONFIRM_ENV, "").split(",") if c.strip()}
    ok = set(confirmed) | from_env
    known = set(remembered)
    return [c for c, uid in identities.items() if c not in ok and (uid is None or uid not in known)]
