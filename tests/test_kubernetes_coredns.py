"""dns faults through a real CoreDNS (`kube_coredns`) over a real API server (`control_plane`): the
names a caller resolves — its callee's Service, ``<service>.<namespace>.svc.cluster.local`` in the
callee's cluster, ``<service>.<namespace>.svc.clusterset.local`` (a ServiceImport, CoreDNS's
``multicluster`` zone) in another — answer as the fault says while it holds, and as before once it
is reverted; the other Services answer throughout. bascule acts as its ServiceAccount
(``deploy/rbac.yaml``) and edits ``kube-system/coredns`` (``allow_coredns_override``: no Chaos Mesh
here); CoreDNS's ``reload`` plugin applies the Corefile the ConfigMap then holds."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path

import dns.exception
import pytest
from control_plane import NEEDS_CONTROL_PLANE, ControlPlane, running_control_plane
from kube_coredns import (
    NEEDS_COREDNS,
    NEEDS_MCS_API,
    SERVICE_IMPORTS,
    Answer,
    CoreDns,
    import_service,
    install_mcs_api,
    running_coredns,
)
from kube_real import RealCluster, RealWorld, prepare_clusters, real_world
from kube_world import touch_of

from bascule.faults import Dns, DnsAnswer
from bascule.model.selector import Selector
from bascule.plan.model import Action, ActionOp
from bascule.targets.kubernetes.target import KubernetesTarget

pytestmark = [pytest.mark.slow, NEEDS_CONTROL_PLANE, NEEDS_COREDNS]

STORE = "store--aws-us-east-1.rag.svc.cluster.local"
"""What gateway and retriever in aws/us-east-1 resolve to reach the store (`render`'s Service)."""
RETRIEVER = "retriever--aws-us-east-1.rag.svc.cluster.local"
DESIGN_NAME = "store.aws-us-east-1.bascule.internal"
"""The design's name of the same store: nothing in the cluster resolves it."""


@pytest.fixture(scope="module")
def plane(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ControlPlane]:
    with running_control_plane(tmp_path_factory.mktemp("control-plane"), ["aws", "scw"]) as found:
        yield found


@pytest.fixture(scope="module")
def clusters(plane: ControlPlane) -> dict[str, RealCluster]:
    # No Chaos Mesh: a dns fault is then the CoreDNS override, whatever its answer.
    return prepare_clusters(plane, chaos_mesh=False)


@pytest.fixture
def w(tmp_path: Path, clusters: dict[str, RealCluster]) -> Iterator[RealWorld]:
    with real_world(tmp_path, clusters) as found:
        yield found


def _service(cluster: RealCluster, name: str, app: str) -> str:
    """Service `name` in ``rag`` (kept across tests; the world's reset leaves Services); its
    cluster IP, which the API server allocates."""
    body = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name, "namespace": "rag"},
        "spec": {"selector": {"app": app}, "ports": [{"port": 8080}]},
    }
    cluster.admin.request("POST", "/api/v1/namespaces/rag/services", body, ok=(409,))
    found = cluster.admin.get("v1/services", "rag", name)
    assert found is not None
    return str(found["spec"]["clusterIP"])


def _ask(coredns: CoreDns, name: str) -> Answer:
    try:
        return coredns.resolve(name)
    except dns.exception.Timeout:
        return Answer("TIMEOUT", ())


def _until(coredns: CoreDns, name: str, wanted: Callable[[Answer], bool], what: str) -> float:
    """Seconds until `name` answers as `wanted` (the ConfigMap synced to CoreDNS's file each try);
    at most 30 s."""
    began = time.monotonic()
    last = None
    for _ in range(60):
        coredns.sync()
        last = _ask(coredns, name)
        if wanted(last):
            return time.monotonic() - began
        time.sleep(0.5)
    raise AssertionError(f"{name} never {what} in 30 s: last {last}")


EXPECTED = {
    DnsAnswer.NXDOMAIN: Answer("NXDOMAIN", ()),
    DnsAnswer.NODATA: Answer("NOERROR", ()),
    DnsAnswer.SERVFAIL: Answer("SERVFAIL", ()),
    DnsAnswer.DROP: Answer("TIMEOUT", ()),
}


@pytest.mark.parametrize("answer", list(EXPECTED), ids=[a.value for a in EXPECTED])
def test_a_dns_fault_changes_what_callers_resolve_through_coredns_then_reverts(
    w: RealWorld, tmp_path: Path, answer: DnsAnswer
) -> None:
    aws = w.clusters["aws"]
    store_ip = _service(aws, "store--aws-us-east-1", "store")
    retriever_ip = _service(aws, "retriever--aws-us-east-1", "retriever")
    with running_coredns(tmp_path, aws.server) as coredns:
        before = w.snapshot()
        # Before any fault, CoreDNS serves both Services: waited for (its first answers after
        # `ready` timed out under load), the precondition rather than what is tested.
        _until(coredns, STORE, lambda a: a == Answer("NOERROR", (store_ip,)), "resolved to its ClusterIP")
        _until(
            coredns, RETRIEVER, lambda a: a == Answer("NOERROR", (retriever_ip,)), "resolved to its ClusterIP"
        )
        assert _ask(coredns, DESIGN_NAME).rcode != "NOERROR"

        fault = Dns(answer=answer)
        touch = touch_of(fault, Selector(component="store", region="aws/us-east-1"))
        with KubernetesTarget.start(w.mapping, w.apis, tmp_path / "run") as target:
            action = Action(0.0, ActionOp.APPLY, 0, fault)
            assert target.apply(action, touch).effects
            held = _until(coredns, STORE, lambda a: a == EXPECTED[answer], f"answered {answer.value}")
            assert _ask(coredns, RETRIEVER) == Answer("NOERROR", (retriever_ip,))
            assert target.revert(action).changed
            lifted = _until(coredns, STORE, lambda a: a == Answer("NOERROR", (store_ip,)), "resolved again")
        assert _ask(coredns, RETRIEVER) == Answer("NOERROR", (retriever_ip,))
        assert w.snapshot() == before
        print(
            f"\n{answer.value}: CoreDNS ready in {coredns.started_in:.1f} s; the fault seen "
            f"{held:.1f} s after its ConfigMap patch, lifted {lifted:.1f} s after the revert "
            "(reload 2s; loaded machine)"
        )


def test_two_dns_faults_in_force_on_one_service_are_loaded_by_coredns_and_reverted_in_turn(
    w: RealWorld, tmp_path: Path
) -> None:
    # The older fault empties the store's name; the newer fails every lookup of the region's
    # Services, the store's among them. Before the fix the Corefile named the store's zone twice:
    # CoreDNS refuses such a Corefile ("cannot serve dns://store--….:53 - it is already defined";
    # at start it exits), its reload kept the older one, and the newer fault changed nothing a
    # caller saw: the retriever's name never answered SERVFAIL.
    aws = w.clusters["aws"]
    store_ip = _service(aws, "store--aws-us-east-1", "store")
    retriever_ip = _service(aws, "retriever--aws-us-east-1", "retriever")
    with running_coredns(tmp_path, aws.server) as coredns:
        before = w.snapshot()
        original = coredns.file.read_text(encoding="utf-8")
        older = Dns(answer=DnsAnswer.NXDOMAIN)
        newer = Dns(answer=DnsAnswer.SERVFAIL)
        first = Action(0.0, ActionOp.APPLY, 0, older)
        second = Action(0.0, ActionOp.APPLY, 1, newer)
        with KubernetesTarget.start(w.mapping, w.apis, tmp_path / "run") as target:
            target.apply(first, touch_of(older, Selector(component="store", region="aws/us-east-1")))
            _until(coredns, STORE, lambda a: a == Answer("NXDOMAIN", ()), "answered NXDOMAIN")
            target.apply(second, touch_of(newer, Selector(region="aws/us-east-1")))
            held = _until(coredns, RETRIEVER, lambda a: a.rcode == "SERVFAIL", "answered SERVFAIL")
            assert _ask(coredns, STORE) == Answer("SERVFAIL", ())

            target.revert(second)  # the older fault holds the store's name again
            _until(coredns, RETRIEVER, lambda a: a == Answer("NOERROR", (retriever_ip,)), "resolved again")
            assert _ask(coredns, STORE) == Answer("NXDOMAIN", ())
            target.revert(first)
            _until(coredns, STORE, lambda a: a == Answer("NOERROR", (store_ip,)), "resolved again")
        coredns.sync()
        assert coredns.file.read_text(encoding="utf-8").encode() == original.encode()
        assert w.snapshot() == before
        print(f"\ntwo dns faults: the newer seen {held:.1f} s after its patch (reload 2s; loaded machine)")


CLUSTERSET_STORE = "store--aws-us-east-1.rag.svc.clusterset.local"
"""What the gateway in scaleway/fr-par (cluster ``scw``) resolves to reach the store in us-east-1
(cluster ``aws``): `render` exports the store's Service and calls it by its Multi-Cluster Services
name from another cluster."""
CLUSTERSET_RETRIEVER = "retriever--aws-us-east-1.rag.svc.clusterset.local"


@pytest.fixture(scope="module")
def imported(clusters: dict[str, RealCluster]) -> dict[str, str]:
    """The MCS API in ``scw`` and, as an MCS implementation writes them there, ServiceImports of
    the store's and the retriever's Services of ``aws``, their ``ips`` those Services' cluster IPs
    (a flat network across the clusters); {clusterset name: its IP}."""
    aws, scw = clusters["aws"], clusters["scw"]
    install_mcs_api(scw.server)
    found = {}
    for name, app, clusterset in (
        ("store--aws-us-east-1", "store", CLUSTERSET_STORE),
        ("retriever--aws-us-east-1", "retriever", CLUSTERSET_RETRIEVER),
    ):
        ip = _service(aws, name, app)
        import_service(scw.server, "rag", name, [ip], 8080)
        found[clusterset] = ip
    return found


@NEEDS_MCS_API
@pytest.mark.parametrize("answer", list(EXPECTED), ids=[a.value for a in EXPECTED])
def test_a_dns_fault_changes_what_callers_in_another_cluster_resolve_through_coredns_then_reverts(
    w: RealWorld, tmp_path: Path, imported: dict[str, str], answer: DnsAnswer
) -> None:
    # A dns fault on the store of us-east-1 (cluster aws) appends to scw's Corefile a server block
    # for the store's clusterset.local name, beside the `.` block whose kubernetes plugin serves
    # that zone from ServiceImports: the more specific zone must win there too.
    scw = w.clusters["scw"]
    store_ip, retriever_ip = imported[CLUSTERSET_STORE], imported[CLUSTERSET_RETRIEVER]
    imports = _imports(scw)
    with running_coredns(tmp_path, scw.server, multicluster=True) as coredns:
        before = w.snapshot()
        original = coredns.file.read_bytes()
        _until(
            coredns,
            CLUSTERSET_STORE,
            lambda a: a == Answer("NOERROR", (store_ip,)),
            "resolved to its ServiceImport's IP",
        )
        _until(
            coredns,
            CLUSTERSET_RETRIEVER,
            lambda a: a == Answer("NOERROR", (retriever_ip,)),
            "resolved to its ServiceImport's IP",
        )
        # The answer is the ServiceImport's: scw has no such Service of its own.
        assert _ask(coredns, STORE).rcode == "NXDOMAIN"

        fault = Dns(answer=answer)
        touch = touch_of(fault, Selector(component="store", region="aws/us-east-1"))
        with KubernetesTarget.start(w.mapping, w.apis, tmp_path / "run") as target:
            action = Action(0.0, ActionOp.APPLY, 0, fault)
            assert target.apply(action, touch).effects
            coredns.sync()
            assert CLUSTERSET_STORE in coredns.file.read_text(encoding="utf-8")
            held = _until(
                coredns, CLUSTERSET_STORE, lambda a: a == EXPECTED[answer], f"answered {answer.value}"
            )
            assert _ask(coredns, CLUSTERSET_RETRIEVER) == Answer("NOERROR", (retriever_ip,))
            assert target.revert(action).changed
            lifted = _until(
                coredns, CLUSTERSET_STORE, lambda a: a == Answer("NOERROR", (store_ip,)), "resolved again"
            )
        assert _ask(coredns, CLUSTERSET_RETRIEVER) == Answer("NOERROR", (retriever_ip,))
        coredns.sync()
        assert coredns.file.read_bytes() == original
        assert w.snapshot() == before
        assert _imports(scw) == imports  # bascule never writes them: not even their resourceVersion moved
        print(
            f"\n{answer.value} on {CLUSTERSET_STORE}: CoreDNS ready in {coredns.started_in:.1f} s; the "
            f"fault seen {held:.1f} s after its ConfigMap patch, lifted {lifted:.1f} s after the revert "
            "(reload 2s; loaded machine)"
        )


def _imports(cluster: RealCluster) -> dict[str, dict[str, object]]:
    return {o["metadata"]["name"]: o for o in cluster.admin.list(SERVICE_IMPORTS, "rag")}
