"""The Kubernetes call plan: the exact calls each fault makes, every refusal with its reason, the
NetworkPolicy peer logic, and the promise that planning makes no request (the emulated API
servers' request logs prove it)."""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

import kubernetes_validate  # type: ignore[import-untyped]
import pytest
from kube_emulator import matches_selector
from kube_world import TARGET, design, mapping, touch_of, world
from test_kubernetes_contract import CASES

from bascule.errors import TargetError
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
    IdentityMode,
    Latency,
    LatencyPer,
    Partition,
    RegionOutage,
    Throttle,
)
from bascule.model.loading import parse_design, parse_scenario, read_design, read_scenario
from bascule.model.selector import Selector
from bascule.plan import plan
from bascule.plan.resolve import resolve
from bascule.targets.kubernetes.calls import (
    COREDNS_NAME,
    ChangeMode,
    ClusterFacts,
    RefusalRule,
    Verb,
    check_plan,
    compute_calls,
    coredns_block,
    corefile_with,
    object_name,
    render_plan_calls,
)
from bascule.targets.kubernetes.calls.policies import except_groups
from bascule.targets.kubernetes.cluster import connect, discover, is_local_server, unconfirmed
from bascule.targets.kubernetes.ledger import KUBE_LEDGER_FILE, KubeLedger
from bascule.targets.kubernetes.mapping import bind, parse_target
from bascule.targets.kubernetes.resources import CHAOS_KINDS, NODES, PODS
from bascule.targets.kubernetes.target import KubernetesTarget

WITH_CHAOS = {c: ClusterFacts(chaos=frozenset(r.plural for r in CHAOS_KINDS)) for c in ("aws", "scw")}
WITHOUT_CHAOS = {c: ClusterFacts() for c in ("aws", "scw")}


def _calls(
    fault: Fault, selector: Selector, facts: dict[str, ClusterFacts] = WITH_CHAOS, text: str = TARGET
) -> Any:
    return compute_calls(fault, touch_of(fault, selector), mapping(text), facts, run_id="ab12cd", key="p3.c1")


def test_a_region_outage_plans_policies_then_cordon_then_pod_deletions() -> None:
    found = _calls(RegionOutage(), Selector(region="aws/eu-west-3"))
    assert found.refusal is None
    verbs = [(c.verb, c.resource.kind) for c in found.calls]
    assert verbs == [(Verb.CREATE, "NetworkPolicy")] * 4 + [(Verb.PATCH, "Node")] + [(Verb.DELETE, "Pod")] * 4
    cordon = found.calls[4]
    assert cordon.context == "aws" and dict(cordon.labels) == {"topology.kubernetes.io/region": "eu-west-3"}
    assert cordon.changes[0].path == ("spec", "unschedulable") and cordon.changes[0].value is True
    delete = found.calls[5]
    assert dict(delete.on_nodes or ()) == {"topology.kubernetes.io/region": "eu-west-3"}
    assert "on nodes -l topology.kubernetes.io/region=eu-west-3" in delete.describe()
    assert found.calls[0].body is not None
    assert found.calls[0].body["metadata"]["labels"] == {
        "bascule.io/run-id": "ab12cd",
        "bascule.io/fault": "p3.c1",
    }
    assert found.calls[0].name == "bascule-ab12cd-p3-c1-0"


def test_a_region_alone_in_its_cluster_deletes_pods_on_any_node() -> None:
    found = _calls(Crash(), Selector(component="gateway", region="scaleway/fr-par"))
    (call,) = found.calls
    assert call.on_nodes is None and call.required
    assert call.reads() == [(PODS, Verb.LIST)]
    assert any("restart_after" in n for n in found.notes)


def test_control_plane_pins_hpas_to_their_current_replicas() -> None:
    found = _calls(ControlPlane(), Selector(region="scaleway/fr-par"))
    hpas = [c for c in found.calls if c.resource.kind == "HorizontalPodAutoscaler"]
    assert {dict(c.labels)["app"] for c in hpas} == {"gateway", "retriever", "store", "llm"}
    for call in hpas:
        assert [(c.path, c.mode, c.source) for c in call.changes] == [
            (("spec", "minReplicas"), ChangeMode.COPY, ("status", "currentReplicas")),
            (("spec", "maxReplicas"), ChangeMode.COPY, ("status", "currentReplicas")),
        ]
    assert found.calls[0].resource == NODES and found.calls[0].labels == ()


def test_dns_override_appends_one_server_block_per_host_to_each_callers_corefile() -> None:
    found = _calls(
        Dns(answer=DnsAnswer.NXDOMAIN), Selector(component="store", region="aws/us-east-1"), WITHOUT_CHAOS
    )
    assert [(c.context, c.namespace, c.name) for c in found.calls] == [
        ("aws", "kube-system", COREDNS_NAME),
        ("scw", "kube-system", COREDNS_NAME),
    ]
    block = found.calls[0].changes[0].value
    assert found.calls[0].changes[0].mode is ChangeMode.APPEND
    # The names callers resolve, not the design's: the Service `render` writes, in the cluster
    # domain from its own cluster, its Multi-Cluster Services name from the other.
    assert block == coredns_block(
        ("store--aws-us-east-1.rag.svc.cluster.local",), DnsAnswer.NXDOMAIN, "ab12cd", "p3.c1"
    )
    assert "store--aws-us-east-1.rag.svc.cluster.local {" in block and "rcode NXDOMAIN" in block
    assert found.calls[1].changes[0].value == coredns_block(
        ("store--aws-us-east-1.rag.svc.clusterset.local",), DnsAnswer.NXDOMAIN, "ab12cd", "p3.c1"
    )
    assert "bascule.internal" not in found.calls[1].changes[0].value
    assert "erratic" in coredns_block(("a.example",), DnsAnswer.DROP, "r", "k")


def test_two_overrides_in_force_give_coredns_each_zone_in_one_server_block() -> None:
    store, retriever = "store--a.rag.svc.cluster.local", "retriever--a.rag.svc.cluster.local"
    first = coredns_block((store,), DnsAnswer.NXDOMAIN, "ab12cd", "p0")
    second = coredns_block((retriever, store), DnsAnswer.SERVFAIL, "ab12cd", "p1")
    assert corefile_with("orig\n", []) == "orig\n"
    assert corefile_with("orig\n", [first]) == "orig\n" + first
    both = corefile_with("orig\n", [first, second])
    # One block per zone (CoreDNS refuses a zone defined twice); the latest fault's answer holds.
    assert both.count(f"{store} {{") == 1 and both.count(f"{retriever} {{") == 1
    assert both.count("rcode SERVFAIL") == 2 and "rcode NXDOMAIN" not in both
    # Both faults are still named, so either can be found and removed.
    assert "bascule.io/fault=p0" in both and "bascule.io/fault=p1" in both
    # The earlier fault's block comes back when the later is reverted.
    assert corefile_with("orig\n", [second, first]).count("rcode NXDOMAIN") == 1
    # A text not in coredns_block's form is appended as it is.
    assert corefile_with("orig\n", ["# hand-made\n"]) == "orig\n# hand-made\n"


def test_dns_names_a_mapped_service_in_the_target_files_cluster_domain() -> None:
    text = TARGET.replace(
        "store: {namespace: rag, selector: {app: store}",
        "store: {namespace: rag, service: kv, selector: {app: store}",
    ).replace("allow_coredns_override: true", "allow_coredns_override: true\ncluster_domain: corp.example")
    assert "service: kv" in text and "cluster_domain: corp.example" in text
    found = _calls(
        Dns(answer=DnsAnswer.SERVFAIL), Selector(component="store", region="aws/us-east-1"), WITH_CHAOS, text
    )
    assert found.refusal is None
    patterns = {c.context: c.body["spec"]["patterns"] for c in found.calls if c.body is not None}
    assert patterns == {"aws": ["kv.rag.svc.corp.example"], "scw": ["kv.rag.svc.clusterset.local"]}


def test_dns_on_an_unmapped_callee_is_refused() -> None:
    text = TARGET.replace("  llm: {namespace: rag, selector: {app: llm}, port: 8080}\n", "")
    assert "llm:" not in text.split("components:")[1]
    found = _calls(
        Dns(answer=DnsAnswer.NXDOMAIN), Selector(component="llm", region="aws/us-east-1"), WITHOUT_CHAOS, text
    )
    assert found.refusal is not None and found.refusal.rule is RefusalRule.UNMAPPED
    assert "namespace of the Service" in found.refusal.message


def test_chaos_kinds_become_chaos_mesh_objects() -> None:
    latency = _calls(Latency(fixed=0.25), Selector(component="llm", region="aws/us-east-1"))
    (call,) = latency.calls
    assert call.resource.kind == "NetworkChaos" and call.body is not None
    assert call.body["spec"]["delay"]["latency"] == "250ms"
    assert call.body["spec"]["selector"] == {
        "namespaces": ["rag"],
        "labelSelectors": {"app": "llm", "bascule.io/region": "aws-us-east-1"},
    }
    throttle = _calls(Throttle(retry_after=2.5), Selector(component="llm", region="aws/us-east-1"))
    assert throttle.calls[0].body is not None
    replace = throttle.calls[0].body["spec"]["replace"]
    assert replace["code"] == 429 and replace["headers"] == {"Retry-After": "3"}
    identity = _calls(Identity(), Selector(dependency="aws-sts"))
    assert identity.calls[0].namespace == "identity"
    assert any("one status: 500" in n for n in identity.notes)
    hang = _calls(Hang(), Selector(component="store", region="aws/eu-west-3"))
    assert hang.calls[0].body is not None and hang.calls[0].body["spec"]["action"] == "pod-failure"


def test_a_link_across_clusters_uses_the_peers_cidrs() -> None:
    found = _calls(Blackhole(), Selector(link=("aws/us-east-1", "scaleway/fr-par")))
    bodies = [c.body for c in found.calls if c.body is not None]
    external = [b["spec"]["externalTargets"] for b in bodies if "externalTargets" in b["spec"]]
    assert ["198.51.100.0/24", "2001:db8::/32"] in external
    assert ["192.0.2.0/25"] in external


def test_network_chaos_acts_on_both_directions_only_between_named_pods() -> None:
    # Chaos Mesh's admission webhook refuses `from` and `both` on a netem action without `target`
    # (every peer) or with `externalTargets` (test_kubernetes_control_plane runs it).
    everyone = _calls(Blackhole(), Selector(component="llm", region="aws/us-east-1"))
    across = _calls(Blackhole(), Selector(link=("aws/us-east-1", "scaleway/fr-par")))
    within = _calls(Blackhole(), Selector(link=("aws/us-east-1", "aws/eu-west-3")))
    timeout = _calls(Identity(mode=IdentityMode.TIMEOUT), Selector(dependency="aws-sts"))
    for found in (everyone, across, timeout):
        specs = [c.body["spec"] for c in found.calls if c.body is not None]
        assert specs and all(s["direction"] == "to" and "target" not in s for s in specs)
    specs = [c.body["spec"] for c in within.calls if c.body is not None]
    assert specs and all(s["direction"] == "both" and "target" in s for s in specs)


# -- refusals --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "fault",
    [
        Latency(fixed=0.1),
        Blackhole(),
        HttpError(),
        Throttle(),
        Hang(),
        Identity(),
    ],
    ids=lambda f: f.kind,
)
def test_chaos_mesh_kinds_are_refused_where_its_crds_are_missing(fault: Fault) -> None:
    selector = (
        Selector(dependency="aws-sts")
        if isinstance(fault, Identity)
        else Selector(component="llm", region="aws/us-east-1")
    )
    found = _calls(fault, selector, WITHOUT_CHAOS)
    assert found.refusal is not None and found.refusal.rule is RefusalRule.NEEDS_CHAOS_MESH
    assert "install Chaos Mesh" in found.refusal.message and "'aws'" in found.refusal.message
    assert found.calls == ()


def test_chaos_mesh_kinds_are_planned_with_a_note_when_discovery_did_not_run() -> None:
    found = _calls(Latency(fixed=0.1), Selector(component="llm", region="aws/us-east-1"), {})
    assert found.refusal is None and any("not checked" in n for n in found.notes)


def test_a_protected_namespace_is_refused() -> None:
    text = TARGET.replace("aws-sts: {namespace: identity,", "aws-sts: {namespace: payments,")
    found = _calls(RegionOutage(), Selector(region="aws/us-east-1"), text=text)
    assert found.refusal is not None and found.refusal.rule is RefusalRule.PROTECTED_NAMESPACE
    assert "'payments'" in found.refusal.message
    text = TARGET.replace("llm: {namespace: rag,", "llm: {namespace: kube-system,")
    found = _calls(RegionOutage(), Selector(region="scaleway/fr-par"), text=text)
    assert found.refusal is not None and found.refusal.rule is RefusalRule.PROTECTED_NAMESPACE
    assert "'kube-system'" in found.refusal.message


def test_a_region_mapped_to_no_listed_context_is_refused() -> None:
    # The identity service lives in a catalog region the design does not run in, and the target
    # file maps no context for it.
    text = DESIGN_WITH_OUTSIDE_DEPENDENCY
    d = parse_design(text, "outside.yaml")
    target = parse_target(TARGET, "target.yaml", d)
    bound = bind(target, d)
    fault = RegionOutage()
    touch, problems = resolve(d, fault, Selector(region="aws/us-east-2"), ("phases", 0))
    assert not problems and touch.regions == ("aws/us-east-2",)
    found = compute_calls(fault, touch, bound, WITH_CHAOS, run_id="r", key="p0")
    assert found.refusal is not None and found.refusal.rule is RefusalRule.UNLISTED_CONTEXT
    assert "aws/us-east-2" in found.refusal.message


DESIGN_WITH_OUTSIDE_DEPENDENCY = """
id: outside
regions:
  - {id: aws/us-east-1, depends_on: [aws-sts]}
  - {id: aws/eu-west-3}
  - {id: scaleway/fr-par}
dependencies:
  aws-sts: {kind: identity, region: aws/us-east-2}
components:
  gateway: {replicas: {aws/us-east-1: 1, aws/eu-west-3: 1, scaleway/fr-par: 1}}
  retriever: {replicas: {aws/us-east-1: 1, scaleway/fr-par: 1}}
  store: {replicas: {aws/us-east-1: 1, scaleway/fr-par: 1}}
  llm: {replicas: {aws/us-east-1: 1, scaleway/fr-par: 1}}
"""


def test_data_loss_is_refused_unless_allowed() -> None:
    text = TARGET.replace("allow_data_loss: true", "allow_data_loss: false")
    found = _calls(DataLoss(), Selector(component="store", region="aws/us-east-1"), text=text)
    assert found.refusal is not None and found.refusal.rule is RefusalRule.DATA_LOSS_NOT_ALLOWED
    assert "allow_data_loss: true" in found.refusal.message
    allowed = _calls(DataLoss(), Selector(component="store", region="aws/us-east-1"))
    assert [c.resource.kind for c in allowed.calls] == ["PersistentVolumeClaim", "Pod"]
    assert allowed.calls[0].via_pods


def test_dns_is_refused_without_chaos_mesh_and_without_the_coredns_opt_in() -> None:
    text = TARGET.replace("allow_coredns_override: true", "allow_coredns_override: false")
    selector = Selector(component="store", region="aws/us-east-1")
    found = _calls(Dns(answer=DnsAnswer.SERVFAIL), selector, WITHOUT_CHAOS, text)
    assert found.refusal is not None and found.refusal.rule is RefusalRule.DNS_NOT_ALLOWED
    assert "allow_coredns_override: true" in found.refusal.message
    # DNSChaos only answers SERVFAIL: an empty answer needs the CoreDNS override even with it.
    nodata = _calls(Dns(answer=DnsAnswer.NODATA), selector, WITH_CHAOS, text)
    assert nodata.refusal is not None and "SERVFAIL only" in nodata.refusal.message
    servfail = _calls(Dns(answer=DnsAnswer.SERVFAIL), selector, WITH_CHAOS, text)
    assert servfail.refusal is None and {c.resource.kind for c in servfail.calls} == {"DNSChaos"}


@pytest.mark.parametrize(
    ("fault", "selector", "words"),
    [
        (Crash(), Selector(component="gateway", region="aws/us-east-1", replica=1), "no stable index"),
        (
            Latency(fixed=0.1, per=LatencyPer.CONNECTION),
            Selector(component="llm", region="aws/us-east-1"),
            "per connection",
        ),
        (Blackhole(new_connections_only=True), Selector(component="llm", region="aws/us-east-1"), "pooled"),
        (HttpError(ratio=0.5), Selector(component="llm", region="aws/us-east-1"), "fraction"),
        (Dns(new_connections_only=False), Selector(component="llm", region="aws/us-east-1"), "pooled"),
        (HttpError(), Selector(link=("aws/us-east-1", "aws/eu-west-3")), "cannot tell"),
    ],
    ids=["replica", "per-connection", "new-connections-only", "ratio", "dns-pooled", "http-link"],
)
def test_what_kubernetes_cannot_do_is_refused_with_a_reason(
    fault: Fault, selector: Selector, words: str
) -> None:
    found = _calls(fault, selector)
    assert found.refusal is not None and found.refusal.rule is RefusalRule.UNSUPPORTED
    assert words in found.refusal.message


def test_a_partition_between_clusters_needs_the_peers_cidrs() -> None:
    text = TARGET.replace('cidrs: [198.51.100.0/24, "2001:db8::/32"]', "")
    found = _calls(Partition(), Selector(link=("aws/us-east-1", "scaleway/fr-par")), text=text)
    assert found.refusal is not None and "give 'cidrs' for scaleway/fr-par" in found.refusal.message


def test_an_unmapped_component_is_left_alone_by_an_outage_and_refused_by_a_crash() -> None:
    text = TARGET.replace("  llm: {namespace: rag, selector: {app: llm}, port: 8080}\n", "")
    outage = _calls(RegionOutage(), Selector(region="scaleway/fr-par"), text=text)
    assert outage.refusal is None and any("llm@scaleway/fr-par is not mapped" in n for n in outage.notes)
    crash = _calls(Crash(), Selector(component="llm", region="scaleway/fr-par"), text=text)
    assert crash.refusal is not None and crash.refusal.rule is RefusalRule.UNMAPPED


def test_unconfirmed_contexts_are_those_whose_cluster_identity_was_never_confirmed() -> None:
    # context → the cluster's identity (its kube-system namespace's UID); None: unknown. Where the
    # API server listens counts for nothing: loopback may be kubectl proxy or an SSH tunnel.
    identities = {"kind": "uid-kind", "eks": "uid-eks", "proxy": None}
    assert unconfirmed(identities, environ={}) == ["kind", "eks", "proxy"]
    assert unconfirmed(identities, ["eks", "proxy"], environ={}) == ["kind"]
    assert unconfirmed(identities, environ={"BASCULE_CONFIRM_CONTEXTS": "other, eks"}) == ["kind", "proxy"]
    assert unconfirmed(identities, environ={}, remembered={"uid-kind", "uid-eks"}) == ["proxy"]
    assert is_local_server("http://localhost:8080") and not is_local_server("https://10.0.0.1")


# -- NetworkPolicy peers ----------------------------------------------------------------------------------


def _peer_allows(peer: dict[str, Any], labels: dict[str, str]) -> bool:
    selector = peer.get("podSelector")
    if selector is None:
        return "namespaceSelector" in peer
    for expression in selector.get("matchExpressions", []):
        assert expression["operator"] == "NotIn"
        if labels.get(expression["key"]) in expression["values"]:
            return False
    return True


@pytest.mark.parametrize(
    "groups",
    [
        [],
        [(("bascule.io/region", "a"),)],
        [(("app", "store"), ("bascule.io/region", "a")), (("app", "store"), ("bascule.io/region", "b"))],
        [(("app", "store"), ("zone", "1")), (("tier", "db"),)],
    ],
)
def test_except_groups_lets_in_exactly_the_pods_in_none_of_the_groups(
    groups: list[tuple[tuple[str, str], ...]],
) -> None:
    peers = except_groups(groups)
    keys = {
        "app": ["store", "gateway"],
        "bascule.io/region": ["a", "b", "c"],
        "zone": ["1", "2"],
        "tier": ["db", "web"],
    }
    for values in itertools.product(*[[*v, None] for v in keys.values()]):
        labels = {k: v for k, v in zip(keys, values, strict=True) if v is not None}
        inside = any(all(labels.get(k) == v for k, v in group) for group in groups)
        allowed = any(_peer_allows(p, labels) for p in peers)
        assert allowed is not inside, (labels, peers)
        selector = ",".join(f"{k}={v}" for k, v in labels.items())
        assert matches_selector(labels, selector)


def test_object_names_are_dns_safe_and_distinct() -> None:
    assert object_name("ab12cd", "p3.c1", 0) == "bascule-ab12cd-p3-c1-0"
    assert len(object_name("ab12cd", "p" * 80, 12)) <= 63


# -- no request --------------------------------------------------------------------------------

SCENARIO = """
id: kube-all
title: every kind, one after another
replay: {compress_to: 60s}
phases:
""" + "".join(
    f"  - {{name: k{i}, at: {i}m, for: 1m, fault: {{kind: {kind}}}, target: {target}}}\n"
    for i, (kind, target) in enumerate(
        [
            ("region-outage", "{region: aws/us-east-1}"),
            ("control-plane", "{region: scaleway/fr-par}"),
            ("partition", "{link: [aws/eu-west-3, scaleway/fr-par]}"),
            ("crash", "{component: gateway, region: aws/eu-west-3}"),
            ("hang", "{component: llm, region: scaleway/fr-par}"),
            ("replication-pause", "{region: aws/us-east-1}"),
        ]
    )
)


def test_the_call_plan_makes_no_request(tmp_path: Path) -> None:
    scenario = parse_scenario(SCENARIO, "kube-all.yaml")
    the_plan = plan(design(), scenario)
    with world(tmp_path) as w:
        facts = discover(w.apis)
        assert all(set(req[0] for req in c.requests()) == {"GET"} for c in w.clusters.values())
        count = w.request_count()
        lines = render_plan_calls(the_plan, w.mapping, facts, run_id="ab12cd")
        refusals = check_plan(the_plan, w.mapping, facts)
        for _, fault, selector, _ in CASES:
            compute_calls(fault, touch_of(fault, selector), w.mapping, facts, run_id="r", key="p0")
        assert w.request_count() == count
    assert refusals == []
    assert any(
        line.strip().startswith("create NetworkPolicy identity/bascule-ab12cd-p0-0 [aws]") for line in lines
    )
    assert any(line.strip().startswith("undo patch Node") and "get Node" not in line for line in lines)
    assert sum(line.lstrip().startswith(("create", "patch", "delete")) for line in lines) > 10


def test_clients_exist_for_listed_contexts_only(tmp_path: Path) -> None:
    with world(tmp_path) as w:
        text = TARGET.replace("contexts: [aws, scw]", "contexts: [aws, scw, gke]").replace(
            "scaleway/fr-par:\n    context: scw", "scaleway/fr-par:\n    context: gke"
        )
        with pytest.raises(TargetError, match=r"gke.*not in"):
            connect(parse_target(text, "t.yaml", design()), w.kubeconfig)
        one = TARGET.replace("contexts: [aws, scw]", "contexts: [aws]").replace(
            "context: scw", "context: aws\n    nodes: {topology.kubernetes.io/region: fr-par}"
        )
        ledger = KubeLedger.create(
            tmp_path / "run" / KUBE_LEDGER_FILE,
            run_id="r",
            design="kube-three",
            kubeconfig=None,
            contexts=("aws",),
        )
        with ledger, pytest.raises(TargetError, match=r"scw.*not listed"):
            KubernetesTarget(mapping(one), w.apis, ledger, run_id="r", facts={})


APS_TARGET = """
contexts: [aws, scw]
regions:
  aws/us-east-1: {context: aws, cidrs: [192.0.2.0/24]}
  scaleway/fr-par: {context: scw, cidrs: [198.51.100.0/24]}
components:
  gateway: {namespace: rag, selector: {app: gateway}, port: 8080}
  retriever: {namespace: rag, selector: {app: retriever}, port: 8080}
  store: {namespace: rag, selector: {app: store}, port: 8080, kind: StatefulSet}
  llm: {namespace: rag, selector: {app: llm}, port: 8080}
  aws-sts: {namespace: rag, selector: {app: aws-sts}, port: 8080}
allow_coredns_override: true
"""


def test_the_aws_2025_10_20_replay_can_run_on_clusters_with_chaos_mesh(
    aps_design_path: Path, aws_scenario_path: Path
) -> None:
    d = read_design(aps_design_path)
    the_plan = plan(d, read_scenario(aws_scenario_path))
    bound = bind(parse_target(APS_TARGET, "aps-target.yaml", d), d)
    assert check_plan(the_plan, bound, {c: WITH_CHAOS["aws"] for c in bound.contexts}) == []
    without = check_plan(the_plan, bound, {c: ClusterFacts() for c in bound.contexts})
    assert [line.split(":")[0] for line in without] == [
        "phase 2 (STS and sign-in failing, identity)",
        "phase 5 (STS errors again, identity)",
    ]
    assert all("install Chaos Mesh" in line for line in without)


def test_discovery_tells_a_cluster_without_chaos_mesh(tmp_path: Path) -> None:
    with world(tmp_path, chaos_mesh=False) as w:
        facts = discover(w.apis)
        assert facts == {"aws": ClusterFacts(), "scw": ClusterFacts()}
        fault = Latency(fixed=0.1)
        found = compute_calls(
            fault,
            touch_of(fault, Selector(component="llm", region="aws/us-east-1")),
            w.mapping,
            facts,
            run_id="r",
            key="p0",
        )
    assert found.refusal is not None and found.refusal.rule is RefusalRule.NEEDS_CHAOS_MESH
    (tmp_path / "with").mkdir()
    with world(tmp_path / "with", chaos_mesh=True) as w:
        assert discover(w.apis)["aws"].chaos == {"networkchaos", "httpchaos", "dnschaos", "podchaos"}


def test_every_networkpolicy_bascule_creates_is_valid_kubernetes() -> None:
    version = kubernetes_validate.latest_version()
    checked = 0
    for _, fault, selector, _ in CASES:
        for call in _calls(fault, selector).calls:
            if call.resource.kind == "NetworkPolicy" and call.body is not None:
                kubernetes_validate.validate(dict(call.body), version, strict=True)
                checked += 1
    assert checked > 20
