"""`bascule run --target kubernetes` of the AWS 2025-10-20 replay over two real control planes (etcd,
kube-apiserver v1.37.2, Chaos Mesh's CRDs and admission webhooks: `control_plane`), holding the
test world of `kube_world` (`kube_real`) and what a user's cluster has beside it: a Service per
component and region (named as `bascule render kubernetes` names them, the names dns faults act
on) and a PodDisruptionBudget per gateway.

As in the kmock replay (`test_kubernetes_run.py`), nothing in the clusters serves: the service the
probes and load measure is the reference stack on this machine, its URLs the target file's
`entries`. bascule acts as the ``bascule`` ServiceAccount under ``deploy/rbac.yaml``, confirms the
clusters by identity (the UID of their kube-system namespace) and talks to each through a
recording relay (`kube_relay`), so that what the journal says bascule sent is checked against what
reached the API servers. Chaos Mesh's real controller-manager runs beside each API server
(`kube_chaos_mesh`): it puts its finalizer on every chaos object bascule creates, injects through a
chaos-daemon STAND-IN (which records the calls and shapes nothing), and lifts its finalizer after the
object's deletion once it has recovered every pod.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from control_plane import NEEDS_CONTROL_PLANE, Admin, ControlPlane, resource_path, running_control_plane
from kube_chaos_mesh import NEEDS_CHAOS_MESH, ChaosMesh
from kube_emulator import SERVER_MANAGED
from kube_real import RealCluster, prepare_clusters, write_token_kubeconfig
from kube_relay import Relay, relaying
from kube_world import DESIGN, populate
from test_kubernetes_run import AWS_2025, _target_with_entries

from bascule.ci.results import run_scored
from bascule.journal import read_journal
from bascule.model.loading import parse_design
from bascule.runner.run import RunOptions
from bascule.targets.kubernetes.identity import CONFIG_ENV, CONFIRMED_FILE, read_confirmed
from bascule.targets.kubernetes.resources import RUN_LABEL
from bascule.targets.local.stack import LocalStack
from bascule.targets.registry import choose

pytestmark = [pytest.mark.slow, NEEDS_CONTROL_PLANE, NEEDS_CHAOS_MESH]

WORLD_NAMESPACES = ("rag", "identity")
POD_CHAOS = ("chaos-mesh.org/v1alpha1/podnetworkchaos", "chaos-mesh.org/v1alpha1/podhttpchaos")
CHAOS_MESH_OWN = ("v1/events", "events.k8s.io/v1/events", *POD_CHAOS)
"""What Chaos Mesh's controller writes in the world's namespaces and keeps: the events it records on
the chaos objects, and its per-pod objects (emptied once the fault is lifted: `_recovered`)."""
Key = tuple[str, str | None, str]


@pytest.fixture(scope="module")
def plane(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ControlPlane]:
    with running_control_plane(
        tmp_path_factory.mktemp("control-plane"), ["aws", "scw"], chaos_mesh=True
    ) as found:
        yield found


@pytest.fixture(scope="module")
def clusters(plane: ControlPlane) -> dict[str, RealCluster]:
    return prepare_clusters(plane)


# -- what a user's cluster holds beside the world's workloads --

SERVICES = {
    "aws": [
        (component, region)
        for region in ("aws-us-east-1", "aws-eu-west-3")
        for component in ("gateway", "retriever", "store", "llm")
    ],
    "scw": [(component, "scaleway-fr-par") for component in ("gateway", "retriever", "store", "llm")],
}


def _seed_user_objects(name: str, cluster: RealCluster) -> None:
    """Services named as `render` names them (``<component>--<region slug>``: the names callers
    resolve), the identity service's, and a PodDisruptionBudget per gateway."""
    admin = cluster.admin
    entries = [(c, r, "rag") for c, r in SERVICES[name]]
    if name == "aws":
        entries.append(("aws-sts", "aws-us-east-1", "identity"))
    for component, region, namespace in entries:
        labels = {"app": component, "bascule.io/region": region}
        admin.request(
            "POST",
            resource_path("v1/services", namespace),
            {
                "apiVersion": "v1",
                "kind": "Service",
                "metadata": {"name": f"{component}--{region}", "namespace": namespace, "labels": labels},
                "spec": {"selector": labels, "ports": [{"name": "http", "port": 8080}]},
            },
        )
        if component == "gateway":
            admin.request(
                "POST",
                resource_path("policy/v1/poddisruptionbudgets", namespace),
                {
                    "apiVersion": "policy/v1",
                    "kind": "PodDisruptionBudget",
                    "metadata": {"name": f"gateway--{region}", "namespace": namespace},
                    "spec": {"maxUnavailable": 1, "selector": {"matchLabels": labels}},
                },
            )


def _listable(admin: Admin) -> list[tuple[str, bool]]:
    """Every resource the API server lists (``v1/pods``, ``apps/v1/deployments``, …), each with
    whether it is namespaced — found by discovery, so that no kind is left out of "every object"."""
    out: list[tuple[str, bool]] = []
    versions = ["v1"]
    for group in admin.request("GET", "/apis").get("groups") or []:
        versions += [str(v["groupVersion"]) for v in group.get("versions") or []]
    for version in versions:
        path = f"/api/{version}" if version == "v1" else f"/apis/{version}"
        for resource in admin.request("GET", path).get("resources") or []:
            if "/" in resource["name"] or "list" not in (resource.get("verbs") or []):
                continue
            out.append((f"{version}/{resource['name']}", bool(resource["namespaced"])))
    return out


def _list(admin: Admin, resource: str, namespace: str | None = None) -> list[dict[str, Any]]:
    """`Admin.list`, waiting out a resource whose storage is still initializing (429: Chaos Mesh's
    23 CRDs are served a moment after they are Established), for at most 60 s."""
    path = resource_path(resource, namespace)
    for _ in range(300):
        answer = admin.request("GET", path, ok=(429,))
        if answer.get("code") != 429:
            return list(answer.get("items") or [])
        time.sleep(0.2)
    raise AssertionError(f"GET {path}: still 429 after 60 s")


def _everything(admin: Admin, listable: list[tuple[str, bool]]) -> dict[Key, dict[str, Any]]:
    """Every object of the world: all of every kind in its namespaces (but `CHAOS_MESH_OWN`), every
    node, and the coredns ConfigMap; server-managed metadata left out."""
    out: dict[Key, dict[str, Any]] = {}
    for resource, namespaced in listable:
        if resource in CHAOS_MESH_OWN:
            continue
        if namespaced:
            found = [(ns, o) for ns in WORLD_NAMESPACES for o in _list(admin, resource, ns)]
        elif resource == "v1/nodes":
            found = [(None, o) for o in _list(admin, resource)]
        else:
            continue
        for namespace, obj in found:
            meta = obj["metadata"]
            for name in SERVER_MANAGED:
                meta.pop(name, None)
            out[(resource, namespace, meta["name"])] = obj
    coredns = admin.get("v1/configmaps", "kube-system", "coredns")
    assert coredns is not None
    for name in SERVER_MANAGED:
        coredns["metadata"].pop(name, None)
    out[("v1/configmaps", "kube-system", "coredns")] = coredns
    return out


def _labelled(admin: Admin, listable: list[tuple[str, bool]]) -> list[Key]:
    """Objects carrying bascule's run label, of any kind, in any namespace."""
    found: list[Key] = []
    for resource, namespaced in listable:
        for obj in _list(admin, resource):
            meta = obj["metadata"]
            if RUN_LABEL in (meta.get("labels") or {}):
                found.append((resource, meta.get("namespace") if namespaced else None, meta["name"]))
    return found


def _recovered(admin: Admin) -> list[str]:
    """Chaos Mesh's per-pod objects in the world's namespaces that still hold a rule (after a
    recovery they are kept, emptied)."""
    left = []
    for resource in POD_CHAOS:
        for namespace in WORLD_NAMESPACES:
            for obj in _list(admin, resource, namespace):
                spec = obj.get("spec") or {}
                if spec.get("rules") or spec.get("tcs") or spec.get("iptables") or spec.get("ipsets"):
                    left.append(f"{resource} {namespace}/{obj['metadata']['name']}")
    return left


def test_the_aws_replay_over_two_real_control_planes_leaves_every_object_as_it_was(
    plane: ControlPlane,
    clusters: dict[str, RealCluster],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv(CONFIG_ENV, str(tmp_path / "config"))
    for cluster in clusters.values():
        cluster.reset()
    populate(clusters)  # type: ignore[arg-type]
    for name, cluster in clusters.items():
        _seed_user_objects(name, cluster)
    listable = {name: _listable(c.admin) for name, c in clusters.items()}
    tokens = {name: c.admin.token("bascule", "bascule") for name, c in clusters.items()}

    design_path = tmp_path / "design.yaml"
    design_path.write_text(DESIGN)
    stack = LocalStack.start(parse_design(DESIGN), design_path, tmp_path / "service")
    try:
        target_file = tmp_path / "target.yaml"
        target_file.write_text(_target_with_entries(stack.entries()))
        with (
            relaying(plane.servers["aws"].url, *_tls(plane, "aws")) as aws_relay,
            relaying(plane.servers["scw"].url, *_tls(plane, "scw")) as scw_relay,
        ):
            relays: dict[str, Relay] = {"aws": aws_relay, "scw": scw_relay}
            servers = {name: replace(plane.servers[name], url=relays[name].url) for name in clusters}
            kubeconfig = write_token_kubeconfig(tmp_path / "kubeconfig", servers, tokens)
            before = {name: _everything(c.admin, listable[name]) for name, c in clusters.items()}
            began = time.monotonic()
            outcome = run_scored(
                RunOptions(
                    scenario=AWS_2025,
                    design=design_path,
                    out=tmp_path / "run",
                    target=choose(
                        "kubernetes",
                        {"target_file": target_file, "kubeconfig": kubeconfig, "confirm": ("aws", "scw")},
                    ),
                    quiet=True,
                ),
                charts=False,
            )
            wall = time.monotonic() - began
            seen = {name: relay.requests() for name, relay in relays.items()}
            after = {name: _everything(c.admin, listable[name]) for name, c in clusters.items()}
            left = {name: _labelled(c.admin, listable[name]) for name, c in clusters.items()}
    finally:
        stack.stop()

    assert outcome.exit_code in (0, 1), outcome.reason  # completed (the score is not the point here)
    records = list(read_journal(outcome.run_dir / "journal.jsonl"))
    (started,) = [r for r in records if r["type"] == "target-started"]
    assert started["target"] == "kubernetes" and set(started["contexts"]) == {"aws", "scw"}

    # Every request that reached an API server is in the journal, and nothing else is.
    journaled: dict[str, Counter[tuple[str, str]]] = {name: Counter() for name in clusters}
    for record in records:
        for method, path, context in record.get("api_calls", []):
            journaled[context][(method, path)] += 1
    for name in clusters:
        assert journaled[name] == Counter(seen[name]), name
    writes = [call for r in records if r["type"] == "fault-applied" for call in r["api_calls"]]
    assert any(call[0] in ("POST", "PATCH") for call in writes)

    # Every phase was carried out and reverted.
    applied = [r for r in records if r["type"] == "fault-applied"]
    reverted = [r for r in records if r["type"] == "fault-reverted"]
    assert applied and all(r["effects"] for r in applied)
    assert {r["kind"] for r in applied} >= {"dns", "control-plane", "identity", "refuse"}, applied
    assert len(reverted) == len(applied)

    # Chaos Mesh injected each chaos object through the daemon, recovered it after bascule's
    # DELETE, and only then let it go: the faults were recorded reverted once their objects were gone.
    chaos_reverts = [r for r in reverted if r.get("deletion")]
    assert chaos_reverts and all(r["deletion"]["gone_after"] is not None for r in chaos_reverts)
    assert all(r["deletion"]["gone_after"] > r["deletion"]["deletes_sent_after"] for r in chaos_reverts)
    injected: set[tuple[str, str]] = set()
    last: dict[tuple[str, str], list[Any]] = {}  # each pod's last rules, in the order of the calls
    for name in clusters:
        for call in _mesh(plane, name).calls("ApplyHttpChaos"):
            rules = json.loads(call.request["rules"])
            last[(name, call.chaos)] = rules
            if rules:
                injected.add((name, call.chaos))
    assert injected and all(last[pod] == [] for pod in injected), last
    assert {name: _recovered(c.admin) for name, c in clusters.items()} == {"aws": [], "scw": []}

    # Every object is back as it was; nothing bascule created is left.
    for name in clusters:
        assert set(after[name]) == set(before[name]), name
        for key, obj in before[name].items():
            assert after[name][key] == obj, key
    assert left == {"aws": [], "scw": []}

    # The clusters were confirmed by identity, and remembered so.
    uids = {
        name: str(c.admin.get("v1/namespaces", None, "kube-system")["metadata"]["uid"])  # type: ignore[index]
        for name, c in clusters.items()
    }
    assert set(read_confirmed(tmp_path / "config" / CONFIRMED_FILE)) == set(uids.values())

    # The run's own figures came out.
    result = json.loads((outcome.run_dir / "result.json").read_text())
    assert result["run"]["design"]["id"] == "kube-three"
    figures = result["figures"]
    assert figures["requests"] > 0 and figures["success_ratio"] is not None, figures
    started_in = {name: round(server.started_in, 1) for name, server in plane.servers.items()}
    chaos_in = {name: round(c.chaos_mesh_installed_in, 1) for name, c in clusters.items()}
    print(
        f"\nreplay over two real control planes: {wall:.1f} s wall (loaded machine); etcd ready in "
        f"{plane.etcd_started_in:.1f} s, kube-apiservers in {started_in} s, Chaos Mesh installed in "
        f"{chaos_in} s; {sum(len(s) for s in seen.values())} requests; "
        f"{len(applied)} transitions applied, {len(chaos_reverts)} chaos object(s) held by Chaos Mesh's "
        f"finalizer (gone {[r['deletion']['gone_after'] for r in chaos_reverts]} s into their revert), "
        f"{len(injected)} pod(s) injected through the daemon; score {result['score']['overall']}, "
        f"success ratio {figures['success_ratio']}"
    )


def _tls(plane: ControlPlane, name: str) -> tuple[Path, Path, Path]:
    pki = plane.servers[name].pki
    return pki.ca, pki.server_cert, pki.server_key


def _mesh(plane: ControlPlane, name: str) -> ChaosMesh:
    found = plane.servers[name].chaos_mesh
    assert found is not None
    return found
