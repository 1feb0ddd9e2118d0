"""Contract tests of the Kubernetes adapters against two emulated clusters over real HTTP, driven
through the official client: for every supported fault kind, apply then revert leaves every object
deep-equal to before (server-managed metadata aside), what bascule created is gone, the only
objects missing are the pods (and, for data-loss, volumes) the fault deleted — each recreated by
its controller in a real cluster — and every request made is one the call plan's RBAC allows."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from kube_emulator import request_permission
from kube_world import COREFILE, World, touch_of, world

from bascule.errors import FaultError
from bascule.faults import (
    Blackhole,
    ControlPlane,
    Crash,
    DataLoss,
    Dns,
    DnsAnswer,
    Fault,
    Hang,
    HttpError,
    Identity,
    Latency,
    Partition,
    ProviderOutage,
    Refuse,
    RegionOutage,
    ReplicationPause,
    Throttle,
)
from bascule.model.selector import Selector
from bascule.plan.model import Action, ActionOp
from bascule.targets.kubernetes.calls import permissions
from bascule.targets.kubernetes.ledger import KUBE_LEDGER_FILE, read_kube_ledger
from bascule.targets.kubernetes.resources import RUN_LABEL
from bascule.targets.kubernetes.target import KubernetesTarget

Check = Callable[[World], None]


@pytest.fixture
def w(tmp_path: Path) -> Iterator[World]:
    with world(tmp_path) as found:
        yield found


def _node(w: World, cluster: str, name: str) -> dict[str, Any]:
    found = w.clusters[cluster].get("v1/nodes", None, name)
    assert found is not None
    return found


def _created(w: World, cluster: str, resource: str) -> list[dict[str, Any]]:
    return [
        obj
        for (res, _, _), obj in w.clusters[cluster].objects().items()
        if res == resource and RUN_LABEL in (obj["metadata"].get("labels") or {})
    ]


def _cordoned(cluster: str, *nodes: str) -> Check:
    def check(w: World) -> None:
        for node in nodes:
            assert _node(w, cluster, node)["spec"].get("unschedulable") is True, node

    return check


def _not_cordoned(cluster: str, *nodes: str) -> Check:
    def check(w: World) -> None:
        for node in nodes:
            assert "unschedulable" not in _node(w, cluster, node)["spec"], node

    return check


def _pods_gone(cluster: str, namespace: str, prefix: str) -> Check:
    def check(w: World) -> None:
        left = [k for k in w.clusters[cluster].objects() if k[0] == "v1/pods" and k[1] == namespace]
        assert not [k for k in left if k[2].startswith(prefix)], left

    return check


def _created_count(
    cluster: str, resource: str, count: int, check: Callable[[dict[str, Any]], None] | None = None
) -> Check:
    def verify(w: World) -> None:
        found = _created(w, cluster, resource)
        assert len(found) == count, [o["metadata"]["name"] for o in found]
        for obj in found:
            if check is not None:
                check(obj)

    return verify


def _all(*checks: Check) -> Check:
    def check(w: World) -> None:
        for c in checks:
            c(w)

    return check


def _deny_all(policy: dict[str, Any]) -> None:
    assert policy["spec"]["policyTypes"] == ["Ingress", "Egress"]
    assert "ingress" not in policy["spec"] and "egress" not in policy["spec"]


def _hpa_pinned(w: World) -> None:
    hpa = w.clusters["aws"].get("autoscaling/v2/horizontalpodautoscalers", "rag", "gateway-aws-us-east-1")
    assert hpa is not None
    assert hpa["spec"]["minReplicas"] == hpa["spec"]["maxReplicas"] == 2


def _scaled_to_zero(w: World) -> None:
    deployment = w.clusters["aws"].get("apps/v1/deployments", "rag", "gateway-aws-eu-west-3")
    assert deployment is not None and deployment["spec"]["replicas"] == 0


def _scaled_to_zero_statefulset(w: World) -> None:
    stateful = w.clusters["scw"].get("apps/v1/statefulsets", "rag", "store-scaleway-fr-par")
    assert stateful is not None and stateful["spec"]["replicas"] == 0


def _corefile_has(*texts: str) -> Check:
    def check(w: World) -> None:
        for cluster in ("aws", "scw"):
            cm = w.clusters[cluster].get("v1/configmaps", "kube-system", "coredns")
            assert cm is not None
            corefile = cm["data"]["Corefile"]
            assert corefile.startswith(COREFILE)
            for text in texts:
                assert text in corefile

    return check


def _partition_same_cluster(policy: dict[str, Any]) -> None:
    peers = policy["spec"]["ingress"][0]["from"]
    expressions = [p["podSelector"]["matchExpressions"] for p in peers if "podSelector" in p]
    assert expressions and all(e[0]["operator"] == "NotIn" for e in expressions)
    assert policy["spec"]["egress"][0]["to"] == peers


def _spec_has(key: str, value: object) -> Callable[[dict[str, Any]], None]:
    def check(obj: dict[str, Any]) -> None:
        assert obj["spec"][key] == value

    return check


def _aimed_at_callers(obj: dict[str, Any]) -> None:
    # A link fault acts only between the two regions: the chaos names the callers' pods.
    peer = obj["spec"]["target"]["selector"]["labelSelectors"]["bascule.io/region"]
    own = obj["spec"]["selector"]["labelSelectors"]["bascule.io/region"]
    assert {peer, own} == {"aws-us-east-1", "aws-eu-west-3"}


def _partition_cross(excluded: str) -> Callable[[dict[str, Any]], None]:
    def check(policy: dict[str, Any]) -> None:
        peers = policy["spec"]["ingress"][0]["from"]
        assert {"namespaceSelector": {}} in peers
        assert any(excluded in p.get("ipBlock", {}).get("except", []) for p in peers), peers

    return check


CASES: list[tuple[str, Fault, Selector, Check]] = [
    (
        "region-outage",
        RegionOutage(),
        Selector(region="aws/us-east-1"),
        _all(
            _cordoned("aws", "use1-a", "use1-b"),
            _not_cordoned("aws", "euw3-a"),
            _created_count("aws", "networking.k8s.io/v1/networkpolicies", 5, _deny_all),
            _pods_gone("aws", "rag", "gateway-aws-us-east-1"),
            _pods_gone("aws", "identity", "aws-sts"),
        ),
    ),
    (
        "provider-outage",
        ProviderOutage(),
        Selector(provider="aws"),
        _all(
            _cordoned("aws", "use1-a", "use1-b", "euw3-a"),
            _not_cordoned("scw", "par-a", "par-b"),
            _created_count("aws", "networking.k8s.io/v1/networkpolicies", 9, _deny_all),
        ),
    ),
    (
        "crash",
        Crash(),
        Selector(component="gateway", region="scaleway/fr-par"),
        _all(_pods_gone("scw", "rag", "gateway-"), _not_cordoned("scw", "par-a")),
    ),
    (
        "control-plane",
        ControlPlane(),
        Selector(region="aws/us-east-1"),
        _all(_cordoned("aws", "use1-a", "use1-b"), _hpa_pinned),
    ),
    (
        "partition-one-cluster",
        Partition(),
        Selector(link=("aws/us-east-1", "aws/eu-west-3")),
        _created_count("aws", "networking.k8s.io/v1/networkpolicies", 8, _partition_same_cluster),
    ),
    (
        "partition-two-clusters",
        Partition(),
        Selector(link=("aws/us-east-1", "scaleway/fr-par")),
        _all(
            _created_count(
                "aws", "networking.k8s.io/v1/networkpolicies", 4, _partition_cross("198.51.100.0/24")
            ),
            _created_count(
                "scw", "networking.k8s.io/v1/networkpolicies", 4, _partition_cross("192.0.2.0/25")
            ),
        ),
    ),
    (
        "replication-pause",
        ReplicationPause(),
        Selector(region="scaleway/fr-par"),
        _created_count("scw", "networking.k8s.io/v1/networkpolicies", 1),
    ),
    ("refuse", Refuse(), Selector(component="gateway", region="aws/eu-west-3"), _scaled_to_zero),
    (
        "refuse-statefulset",
        Refuse(),
        Selector(component="store", region="scaleway/fr-par"),
        _scaled_to_zero_statefulset,
    ),
    (
        "dns-coredns",
        Dns(answer=DnsAnswer.NODATA),
        Selector(component="store", region="aws/us-east-1"),
        _corefile_has("\nstore--aws-us-east-1.rag.svc.", "rcode NOERROR"),
    ),
    (
        "dns-chaos",
        Dns(answer=DnsAnswer.SERVFAIL),
        Selector(component="llm", region="aws/eu-west-3"),
        _all(
            _created_count("aws", "chaos-mesh.org/v1alpha1/dnschaos", 2),
            _created_count("scw", "chaos-mesh.org/v1alpha1/dnschaos", 1),
        ),
    ),
    (
        "latency",
        Latency(fixed=0.15, jitter=0.01),
        Selector(component="retriever", region="scaleway/fr-par"),
        _created_count(
            "scw",
            "chaos-mesh.org/v1alpha1/networkchaos",
            1,
            _spec_has("delay", {"latency": "150ms", "jitter": "10ms", "correlation": "0"}),
        ),
    ),
    (
        "latency-link",
        Latency(fixed=0.2),
        Selector(link=("aws/us-east-1", "aws/eu-west-3")),
        _created_count("aws", "chaos-mesh.org/v1alpha1/networkchaos", 8, _aimed_at_callers),
    ),
    (
        "blackhole",
        Blackhole(),
        Selector(component="llm", region="aws/eu-west-3"),
        _created_count("aws", "chaos-mesh.org/v1alpha1/networkchaos", 1),
    ),
    (
        "http-error",
        HttpError(statuses=(502,)),
        Selector(component="gateway", region="aws/us-east-1"),
        _created_count("aws", "chaos-mesh.org/v1alpha1/httpchaos", 1),
    ),
    (
        "throttle",
        Throttle(),
        Selector(component="llm", region="scaleway/fr-par"),
        _created_count("scw", "chaos-mesh.org/v1alpha1/httpchaos", 1),
    ),
    (
        "hang",
        Hang(),
        Selector(component="retriever", region="aws/eu-west-3"),
        _created_count("aws", "chaos-mesh.org/v1alpha1/podchaos", 1),
    ),
    (
        "identity",
        Identity(),
        Selector(dependency="aws-sts"),
        _created_count("aws", "chaos-mesh.org/v1alpha1/httpchaos", 1),
    ),
    (
        "data-loss",
        DataLoss(),
        Selector(component="store", region="scaleway/fr-par"),
        _pods_gone("scw", "rag", "store-"),
    ),
]


def _missing_allowed(before: dict[Any, Any], after: dict[Any, Any], effects: tuple[str, ...]) -> None:
    extra = set(after) - set(before)
    assert not extra, f"left behind: {sorted(extra)}"
    for key in set(before) - set(after):
        resource, namespace, name = key
        assert resource in ("v1/pods", "v1/persistentvolumeclaims"), f"{key} is gone"
        if resource == "v1/pods":
            owners = before[key]["metadata"].get("ownerReferences") or []
            assert any(o.get("controller") for o in owners), f"{key} had no controller"
        assert any(line.startswith("delete ") and f"{namespace}/{name} " in line for line in effects), key
    for key in set(before) & set(after):
        assert after[key] == before[key], key


@pytest.mark.parametrize(("name", "fault", "selector", "during"), CASES, ids=[c[0] for c in CASES])
def test_apply_then_revert_restores_every_object(
    w: World, tmp_path: Path, name: str, fault: Fault, selector: Selector, during: Check
) -> None:
    touch = touch_of(fault, selector)
    before = w.snapshot()
    target = KubernetesTarget.start(w.mapping, w.apis, tmp_path / "run")
    plan = target.call_plan(fault, touch, "p0")
    assert plan.refusal is None, plan.refusal
    allowed = {(p.group, p.resource, p.verb.value) for p in permissions(plan.calls)}
    first = {c: len(cl.requests()) for c, cl in w.clusters.items()}
    action = Action(0.0, ActionOp.APPLY, 0, fault)

    applied = target.apply(action, touch)
    assert applied.effects
    assert w.snapshot() != before
    during(w)
    reverted = target.revert(action)
    assert reverted.changed
    target.close()

    for cluster, snapshot in w.snapshot().items():
        _missing_allowed(before[cluster], snapshot, applied.effects)
    assert w.created() == []
    for cluster, count in first.items():
        for method, path, _ in w.clusters[cluster].requests()[count:]:
            needed = request_permission(method, path)
            assert needed is None or needed in allowed, (method, path)
    state = read_kube_ledger(tmp_path / "run" / KUBE_LEDGER_FILE)
    assert state.closed and not state.active


def test_overlapping_faults_restore_the_original_whichever_ends_first(w: World, tmp_path: Path) -> None:
    region = Selector(region="aws/us-east-1")
    outage, frozen = RegionOutage(), ControlPlane()
    before = w.snapshot()
    with KubernetesTarget.start(w.mapping, w.apis, tmp_path / "run") as target:
        first = Action(0.0, ActionOp.APPLY, 0, outage)
        second = Action(1.0, ActionOp.APPLY, 1, frozen)
        target.apply(first, touch_of(outage, region))
        target.apply(second, touch_of(frozen, region))
        target.revert(first)
        # The control-plane fault still holds the cordon the outage also set.
        _cordoned("aws", "use1-a", "use1-b")(w)
        target.revert(second)
    after = w.snapshot()
    assert after["aws"][("v1/nodes", None, "use1-a")] == before["aws"][("v1/nodes", None, "use1-a")]
    assert after["aws"][("v1/nodes", None, "use1-b")] == before["aws"][("v1/nodes", None, "use1-b")]
    assert w.created() == []


def test_two_dns_faults_on_one_corefile_restore_it_byte_for_byte_in_any_order(
    w: World, tmp_path: Path
) -> None:
    store = Dns(answer=DnsAnswer.NXDOMAIN)
    llm = Dns(answer=DnsAnswer.DROP)
    with KubernetesTarget.start(w.mapping, w.apis, tmp_path / "run") as target:
        a = Action(0.0, ActionOp.APPLY, 0, store)
        b = Action(0.0, ActionOp.APPLY, 1, llm)
        target.apply(a, touch_of(store, Selector(component="store", region="aws/us-east-1")))
        target.apply(b, touch_of(llm, Selector(component="llm", region="scaleway/fr-par")))
        _corefile_has("rcode NXDOMAIN", "drop 1")(w)
        target.revert(a)
        _corefile_has("drop 1")(w)
        target.revert(b)
    for cluster in ("aws", "scw"):
        cm = w.clusters[cluster].get("v1/configmaps", "kube-system", "coredns")
        assert cm is not None and cm["data"]["Corefile"].encode() == COREFILE.encode()


@pytest.mark.parametrize("first_reverted", [0, 1], ids=["older-first", "newer-first"])
def test_two_dns_overrides_on_one_service_keep_one_block_per_zone_and_restore_the_corefile(
    w: World, tmp_path: Path, first_reverted: int
) -> None:
    # Both name store--aws-us-east-1…: twice in the Corefile, CoreDNS would refuse it.
    older = Dns(answer=DnsAnswer.NXDOMAIN)
    newer = Dns(answer=DnsAnswer.DROP)
    zone = "store--aws-us-east-1.rag.svc.cluster.local {"

    def corefile() -> str:
        cm = w.clusters["aws"].get("v1/configmaps", "kube-system", "coredns")
        assert cm is not None
        return str(cm["data"]["Corefile"])

    with KubernetesTarget.start(w.mapping, w.apis, tmp_path / "run") as target:
        actions = [Action(0.0, ActionOp.APPLY, 0, older), Action(0.0, ActionOp.APPLY, 1, newer)]
        target.apply(actions[0], touch_of(older, Selector(component="store", region="aws/us-east-1")))
        target.apply(actions[1], touch_of(newer, Selector(region="aws/us-east-1")))
        both = corefile()
        assert both.count(zone) == 1 and "drop 1" in both and "rcode NXDOMAIN" not in both
        assert "retriever--aws-us-east-1.rag.svc.cluster.local {" in both
        target.revert(actions[first_reverted])
        left = corefile()
        assert left.count(zone) == 1
        assert ("rcode NXDOMAIN" in left) == (first_reverted == 1) and ("drop 1" in left) == (
            first_reverted == 0
        )
        target.revert(actions[1 - first_reverted])
    assert corefile().encode() == COREFILE.encode()
    # Each fault recorded the original Corefile: whichever is reverted last (or recover) restores it.
    faults = read_kube_ledger(tmp_path / "run" / KUBE_LEDGER_FILE).applied
    befores = {
        f.before for fault in faults for c in fault.changes if c.ref.context == "aws" for f in c.fields
    }
    assert befores == {COREFILE}


def test_a_pod_without_a_controller_is_never_deleted(w: World, tmp_path: Path) -> None:
    w.clusters["scw"].seed(
        "v1/pods",
        {
            "metadata": {
                "name": "debug",
                "namespace": "rag",
                "labels": {"app": "gateway", "bascule.io/region": "scaleway-fr-par"},
            },
            "spec": {"nodeName": "par-a"},
        },
    )
    before = w.snapshot()
    crash = Crash()
    with KubernetesTarget.start(w.mapping, w.apis, tmp_path / "run") as target:
        with pytest.raises(FaultError, match="no controller"):
            target.apply(
                Action(0.0, ActionOp.APPLY, 0, crash),
                touch_of(crash, Selector(component="gateway", region="scaleway/fr-par")),
            )
        assert target.active() == []
    assert w.snapshot() == before


def test_data_loss_deletes_no_claim_that_nothing_makes_again(w: World, tmp_path: Path) -> None:
    # A store pod made by a ReplicaSet (a Deployment's): its claim is named in the pod template, so
    # its replacement would wait on a claim that nobody makes again (on a real cluster:
    # tests/test_kubernetes_statefulsets.py).
    aws = w.clusters["aws"]
    pod = aws.get("v1/pods", "rag", "store-aws-us-east-1-0")
    assert pod is not None
    pod["metadata"]["ownerReferences"] = [
        {"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "store-5d8f", "uid": "u", "controller": True}
    ]
    aws.seed("v1/pods", pod)
    before = w.snapshot()
    fault = DataLoss()
    with KubernetesTarget.start(w.mapping, w.apis, tmp_path / "run") as target:
        with pytest.raises(FaultError, match=r"ReplicaSet store-5d8f.*nothing would make again"):
            target.apply(
                Action(0.0, ActionOp.APPLY, 0, fault),
                touch_of(fault, Selector(component="store", region="aws/us-east-1")),
            )
        assert target.active() == []
    assert w.snapshot() == before


def test_a_change_refused_midway_undoes_the_changes_made_before_it(w: World, tmp_path: Path) -> None:
    w.clusters["scw"].emulator.forbidden.add(("networking.k8s.io", "networkpolicies", "create"))
    before = w.snapshot()
    cut = Partition()
    with KubernetesTarget.start(w.mapping, w.apis, tmp_path / "run") as target:
        action = Action(0.0, ActionOp.APPLY, 0, cut)
        with pytest.raises(FaultError, match="403"):
            target.apply(action, touch_of(cut, Selector(link=("aws/us-east-1", "scaleway/fr-par"))))
        assert target.active() == []
    assert w.snapshot() == before
    assert w.created() == []
    state = read_kube_ledger(tmp_path / "run" / KUBE_LEDGER_FILE)
    assert state.closed and not state.active and len(state.applied) == 1


def test_prepare_records_ahead_and_apply_then_only_acts(w: World, tmp_path: Path) -> None:
    frozen = ControlPlane()
    touch = touch_of(frozen, Selector(region="scaleway/fr-par"))
    before = w.snapshot()
    with KubernetesTarget.start(w.mapping, w.apis, tmp_path / "run") as target:
        early = Action(0.0, ActionOp.APPLY, 0, frozen)
        never = Action(5.0, ActionOp.APPLY, 1, frozen)
        target.prepare(early, touch)
        target.prepare(never, touch)
        assert w.snapshot() == before
        count = len(w.clusters["scw"].requests())
        applied = target.apply(early, touch)
        # Only the changes: the reads were made by prepare.
        assert len(w.clusters["scw"].requests()) - count == len(applied.effects) == 3
        unapplied = target.revert(never)
        assert not unapplied.changed
        _cordoned("scw", "par-a", "par-b")(w)
    assert w.snapshot() == before
    notes = [
        line
        for line in (tmp_path / "run" / KUBE_LEDGER_FILE).read_text().splitlines()
        if "never applied" in line
    ]
    assert len(notes) == 1
