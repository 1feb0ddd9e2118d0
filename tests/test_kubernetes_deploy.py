"""``bascule deploy`` against two emulated clusters over real HTTP, through the official client:
every rendered object ends up in its own cluster, a second deploy writes nothing, a changed render
changes only what changed (dropped keys included), and every refusal happens before any write."""

from __future__ import annotations

import copy
import re
import stat
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp.web
import kube_emulator
import pytest
import yaml
from kube_emulator import Cluster, running, write_kubeconfig
from kube_world import DESIGN as KUBE_DESIGN
from kube_world import TARGET as KUBE_TARGET

from bascule.errors import TargetError
from bascule.model.loading import parse_design
from bascule.targets.kubernetes.cluster import KubeApi, connect
from bascule.targets.kubernetes.deploy import (
    APPLIED_KEYS,
    NAMESPACES,
    DeployOutcome,
    check_manifests,
    deploy,
    merge_patch,
    read_manifests,
    render_deploy_report,
    write_manifests,
)
from bascule.targets.kubernetes.manifests import CONTEXT_ANNOTATION, object_context
from bascule.targets.kubernetes.mapping import KubeMapping, TargetFile, bind, parse_target
from bascule.targets.kubernetes.render import render_manifests

Json = dict[str, Any]
SECRET = "test-only-token-secret"
WRITES = ("POST", "PATCH", "PUT", "DELETE")

_NAMESPACES = re.compile(r"^/api/v1/namespaces(/[^/]+)?$")


class NamespaceEmulator(kube_emulator.Emulator):
    """The tests' emulator, serving the Namespace resource too: kmock reads ``/api/v1/namespaces``
    as the prefix of namespaced paths only, so its requests are served under another plural."""

    async def __call__(self, raw_request: aiohttp.web.BaseRequest) -> aiohttp.web.StreamResponse:
        found = _NAMESPACES.match(raw_request.path)
        if found:
            path = "/api/v1/x-namespaces" + (found[1] or "")
            raw_request = raw_request.clone(rel_url=raw_request.rel_url.with_path(path))
        return await super().__call__(raw_request)


# Where a resource's objects are kept in the emulator, by kind.
STORED = {
    "Namespace": "v1/x-namespaces",
    "Secret": "v1/secrets",
    "ConfigMap": "v1/configmaps",
    "Service": "v1/services",
    "ServiceExport": "multicluster.x-k8s.io/v1alpha1/serviceexports",
    "Deployment": "apps/v1/deployments",
    "StatefulSet": "apps/v1/statefulsets",
    "HorizontalPodAutoscaler": "autoscaling/v2/horizontalpodautoscalers",
}


@dataclass
class Place:
    clusters: dict[str, Cluster]
    target: TargetFile
    mapping: KubeMapping
    apis: dict[str, KubeApi]
    manifests: list[Json]

    def live(self, obj: Json) -> Json | None:
        meta = obj["metadata"]
        cluster = self.clusters[object_context(obj) or ""]
        return cluster.get(STORED[obj["kind"]], meta.get("namespace"), meta["name"])

    def writes(self) -> list[tuple[str, str]]:
        return [(m, p) for c in self.clusters.values() for m, p, _ in c.requests() if m in WRITES]

    def request_count(self) -> int:
        return sum(len(c.requests()) for c in self.clusters.values())


@pytest.fixture
def place(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Place]:
    monkeypatch.setattr(kube_emulator, "Emulator", NamespaceEmulator)
    # kmock serves no kube-system namespace: its clusters have no identity to remember.
    monkeypatch.setenv("BASCULE_CONFIRM_CONTEXTS", "aws,scw")
    design = parse_design(KUBE_DESIGN, "kube-three.yaml")
    target = parse_target(KUBE_TARGET, "target.yaml", design)
    mapping = bind(target, design)
    manifests = render_manifests(
        design, mapping, image="bascule-stack:0.1.0", namespace="rag", token_secret=SECRET
    )
    with running(Cluster("aws"), Cluster("scw")) as (aws, scw):
        clusters = {"aws": aws, "scw": scw}
        kubeconfig = write_kubeconfig(tmp_path / "kubeconfig", clusters)
        apis = connect(target, kubeconfig)
        try:
            yield Place(clusters, target, mapping, apis, manifests)
        finally:
            for api in apis.values():
                api.close()


def _contains(live: Any, wanted: Any) -> bool:
    if isinstance(wanted, dict):
        return isinstance(live, dict) and all(k in live and _contains(live[k], v) for k, v in wanted.items())
    if isinstance(wanted, list):
        return isinstance(live, list) and len(live) == len(wanted) and all(map(_contains, live, wanted))
    return bool(live == wanted)


def test_every_rendered_object_exists_afterwards_and_a_second_deploy_writes_nothing(
    place: Place, tmp_path: Path
) -> None:
    written = write_manifests(place.manifests, tmp_path / "k8s")
    manifests = read_manifests(tmp_path / "k8s")
    assert sorted(p.name for p in written) == ["aws.secrets.yaml", "aws.yaml", "scw.yaml"]

    report = deploy(manifests, place.apis, target=place.target)
    assert report.count(DeployOutcome.CREATED) == len(place.manifests)
    for obj in place.manifests:
        live = place.live(obj)
        assert live is not None, (obj["kind"], obj["metadata"]["name"])
        assert _contains(live, obj), (obj["kind"], obj["metadata"]["name"])
        assert APPLIED_KEYS in live["metadata"]["annotations"]
    # each object is in its own cluster only (a namespace both use is rendered for both)
    rendered = {
        (object_context(o), o["kind"], o["metadata"].get("namespace"), o["metadata"]["name"])
        for o in place.manifests
    }
    for obj in place.manifests:
        other = "scw" if object_context(obj) == "aws" else "aws"
        meta = obj["metadata"]
        if (other, obj["kind"], meta.get("namespace"), meta["name"]) not in rendered:
            assert place.clusters[other].get(STORED[obj["kind"]], meta.get("namespace"), meta["name"]) is None
    secret = next(o for o in place.manifests if o["kind"] == "Secret")
    assert SECRET not in place.live(secret)["metadata"]["annotations"][APPLIED_KEYS]  # type: ignore[index]

    before = len(place.writes())
    again = deploy(manifests, place.apis, target=place.target)
    assert len(place.writes()) == before, "a second deploy of the same manifests must not write"
    assert again.writes == 0
    assert again.count(DeployOutcome.UNCHANGED) + again.count(DeployOutcome.EXISTS) == len(place.manifests)
    assert render_deploy_report(again).splitlines()[-1] == f"{len(place.manifests) - 3} unchanged, 3 exists"


def test_a_changed_render_updates_what_changed_and_removes_what_it_dropped(place: Place) -> None:
    deploy(place.manifests, place.apis, target=place.target)
    changed = copy.deepcopy(place.manifests)
    gateway = next(
        o for o in changed if o["kind"] == "Deployment" and o["metadata"]["name"] == "gateway--aws-us-east-1"
    )
    gateway["spec"]["replicas"] = 3
    del gateway["spec"]["template"]["spec"]["nodeSelector"]
    service = next(
        o for o in changed if o["kind"] == "Service" and o["metadata"]["name"] == "llm--aws-eu-west-3"
    )
    service["metadata"]["labels"]["team"] = "search"

    report = deploy(changed, place.apis, target=place.target)
    updated = {(s.kind, s.name) for s in report.steps if s.outcome is DeployOutcome.UPDATED}
    assert updated == {("Deployment", "gateway--aws-us-east-1"), ("Service", "llm--aws-eu-west-3")}
    live = place.live(gateway)
    assert live is not None
    assert live["spec"]["replicas"] == 3
    assert "nodeSelector" not in live["spec"]["template"]["spec"]
    assert place.live(service)["metadata"]["labels"]["team"] == "search"  # type: ignore[index]

    # and back: the label this deploy no longer renders is removed
    report = deploy(place.manifests, place.apis, target=place.target)
    assert report.count(DeployOutcome.UPDATED) == 2
    assert "team" not in place.live(service)["metadata"]["labels"]  # type: ignore[index]
    assert place.live(gateway)["spec"]["template"]["spec"]["nodeSelector"] == {  # type: ignore[index]
        "topology.kubernetes.io/region": "us-east-1"
    }


def _annotated(obj: Json, context: str) -> Json:
    out = copy.deepcopy(obj)
    out["metadata"]["annotations"][CONTEXT_ANNOTATION] = context
    return out


def test_refusals_happen_before_any_request(place: Place) -> None:
    base = place.manifests
    protected = copy.deepcopy(base[-1])
    protected["metadata"]["namespace"] = "kube-system"
    listed_protected = copy.deepcopy(base[-1])
    listed_protected["metadata"]["namespace"] = "payments"
    stranger = _annotated(base[-1], "prod-eu")
    unannotated = copy.deepcopy(base[-1])
    del unannotated["metadata"]["annotations"][CONTEXT_ANNOTATION]
    role = {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRole",
        "metadata": {"name": "everything", "annotations": {CONTEXT_ANNOTATION: "aws"}},
        "rules": [{"apiGroups": ["*"], "resources": ["*"], "verbs": ["*"]}],
    }
    cases = {
        "namespace 'kube-system' is protected": protected,
        "namespace 'payments' is protected": listed_protected,
        "context 'prod-eu' is not listed": stranger,
        "no bascule.io/context annotation": unannotated,
        "bascule deploys only what it renders": role,
        "given twice": base[0],
    }
    for message, bad in cases.items():
        before = place.request_count()
        with pytest.raises(TargetError, match=re.escape(message)):
            deploy([*base, bad], place.apis, target=place.target)
        assert place.request_count() == before, message


def test_objects_bascule_does_not_manage_are_left_alone(place: Place) -> None:
    theirs = {
        "metadata": {"name": "retriever--scaleway-fr-par", "namespace": "rag", "labels": {"app": "theirs"}},
        "spec": {"replicas": 5},
    }
    place.clusters["scw"].seed("apps/v1/deployments", theirs)
    with pytest.raises(TargetError, match="retriever--scaleway-fr-par exists and is not managed by bascule"):
        deploy(place.manifests, place.apis, target=place.target)
    assert place.writes() == []
    kept = place.clusters["scw"].get("apps/v1/deployments", "rag", "retriever--scaleway-fr-par")
    assert kept is not None
    assert kept["spec"] == {"replicas": 5}


def test_an_existing_namespace_is_left_as_it_is(place: Place) -> None:
    place.apis["aws"].create(NAMESPACES, None, {"metadata": {"name": "rag", "labels": {"team": "rag"}}})
    report = deploy(place.manifests, place.apis, target=place.target)
    rag = next(s for s in report.steps if s.kind == "Namespace" and s.context == "aws" and s.name == "rag")
    assert rag.outcome is DeployOutcome.EXISTS
    live = place.clusters["aws"].get("v1/x-namespaces", None, "rag")
    assert live is not None
    assert live["metadata"]["labels"] == {"team": "rag"}


def test_contexts_outside_this_machine_need_confirmation(place: Place) -> None:
    servers = {"aws": "https://203.0.113.10:6443", "scw": "https://127.0.0.1:6443"}
    problems = check_manifests(place.manifests, place.target, servers, environ={})
    assert problems == [
        "context 'aws' (https://203.0.113.10:6443) is not confirmed: bascule knows a cluster by its "
        "identity (its kube-system namespace's UID), never by its address; confirm it once with "
        "--confirm aws (or BASCULE_CONFIRM_CONTEXTS=aws)",
        "context 'scw' (https://127.0.0.1:6443) is not confirmed: bascule knows a cluster by its "
        "identity (its kube-system namespace's UID), never by its address; confirm it once with "
        "--confirm scw (or BASCULE_CONFIRM_CONTEXTS=scw)",
    ]
    assert check_manifests(place.manifests, place.target, servers, ["aws", "scw"], environ={}) == []
    remembered = {"uid-scw"}
    known = {"aws": "uid-aws", "scw": "uid-scw"}
    found = check_manifests(
        place.manifests, place.target, servers, ["aws"], environ={}, identities=known, remembered=remembered
    )
    assert found == []
    assert (
        check_manifests(
            place.manifests, place.target, servers, environ={"BASCULE_CONFIRM_CONTEXTS": "aws,scw"}
        )
        == []
    )
    missing = check_manifests(place.manifests, place.target, {"aws": servers["aws"]}, ["aws"], environ={})
    assert missing and all("context 'scw' is not connected" in p for p in missing)


def test_manifest_files_keep_secrets_apart_and_read_back_in_apply_order(place: Place, tmp_path: Path) -> None:
    arn = "arn:aws:eks:us-east-1:123456789012:cluster/rag"
    objects = [_annotated(o, arn) if object_context(o) == "aws" else o for o in place.manifests]
    written = write_manifests(objects, tmp_path)
    names = sorted(p.name for p in written)
    assert names == [
        "arn_aws_eks_us-east-1_123456789012_cluster_rag.secrets.yaml",
        "arn_aws_eks_us-east-1_123456789012_cluster_rag.yaml",
        "scw.yaml",
    ]
    secrets = next(p for p in written if p.name.endswith(".secrets.yaml"))
    assert stat.S_IMODE(secrets.stat().st_mode) == 0o600
    assert all(d["kind"] == "Secret" for d in yaml.safe_load_all(secrets.read_text()))
    others = [p for p in written if p is not secrets]
    assert all("Secret" not in {d["kind"] for d in yaml.safe_load_all(p.read_text())} for p in others)
    back = read_manifests(tmp_path)
    assert sorted(map(repr, back)) == sorted(map(repr, objects))
    kinds = [o["kind"] for o in back if object_context(o) == arn]
    assert kinds.index("Namespace") < kinds.index("Secret") < kinds.index("Deployment")
    with pytest.raises(TargetError, match="no such file or directory"):
        read_manifests(tmp_path / "nothing-here")
    (tmp_path / "empty").mkdir()
    with pytest.raises(TargetError, match="no manifests in"):
        read_manifests(tmp_path / "empty")


def test_merge_patch_sets_what_differs_and_removes_what_was_dropped() -> None:
    live = {
        "metadata": {
            "name": "x",
            "uid": "server-side",
            "labels": {"a": "1", "b": "2"},
            "annotations": {
                APPLIED_KEYS: '{"metadata":{"labels":{"a":1,"b":1},"name":1},"spec":{"replicas":1}}'
            },
        },
        "spec": {"replicas": 2, "strategy": {"type": "RollingUpdate"}},
    }
    same = {
        "metadata": {
            "name": "x",
            "labels": {"a": "1", "b": "2"},
            "annotations": dict(live["metadata"]["annotations"]),
        },  # type: ignore[call-overload]
        "spec": {"replicas": 2},
    }
    assert merge_patch(live, same) is None  # server-filled fields (uid, strategy) do not count
    dropped = copy.deepcopy(same)
    del dropped["metadata"]["labels"]["b"]  # type: ignore[attr-defined]
    patch = merge_patch(live, dropped)
    assert patch is not None
    assert patch["metadata"]["labels"] == {"a": "1", "b": None}
    assert merge_patch(None, same) == same
