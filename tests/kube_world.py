"""The world the Kubernetes target's tests act on: a three-region design, a target file mapping it
onto two emulated clusters, and the objects those clusters hold.

    cluster "aws" (context aws)   nodes use1-a, use1-b (us-east-1), euw3-a (eu-west-3)
    cluster "scw" (context scw)   nodes par-a, par-b (fr-par: the whole cluster)

Every component runs as a Deployment (the store as a StatefulSet with one volume per pod) in
namespace ``rag``, labelled ``app: <component>`` plus its region's ``bascule.io/region``; its pods
are owned by a ReplicaSet (or the StatefulSet) and Ready. Gateways have HPAs. The identity service
``aws-sts`` runs in namespace ``identity`` in us-east-1. Each cluster has its CoreDNS ConfigMap.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from kube_emulator import Cluster, comparable, rbac_rules, running, write_kubeconfig

from bascule.faults import Fault
from bascule.model.design import Design
from bascule.model.loading import parse_design
from bascule.model.selector import Selector
from bascule.plan.model import Touch
from bascule.plan.resolve import resolve
from bascule.targets.kubernetes.cluster import KubeApi, connect
from bascule.targets.kubernetes.mapping import KubeMapping, bind, parse_target
from bascule.targets.kubernetes.resources import RUN_LABEL

DESIGN = """
id: kube-three
regions:
  - {id: aws/us-east-1, depends_on: [aws-sts]}
  - {id: aws/eu-west-3}
  - {id: scaleway/fr-par}
dependencies:
  aws-sts: {kind: identity, region: aws/us-east-1}
components:
  gateway: {replicas: {aws/us-east-1: 2, aws/eu-west-3: 1, scaleway/fr-par: 2}}
  retriever: {replicas: {aws/us-east-1: 1, aws/eu-west-3: 1, scaleway/fr-par: 1}}
  store: {replicas: {aws/us-east-1: 1, aws/eu-west-3: 1, scaleway/fr-par: 1}}
  llm: {replicas: {aws/us-east-1: 1, aws/eu-west-3: 1, scaleway/fr-par: 1}}
routing: {mode: active-passive, order: [aws/us-east-1, aws/eu-west-3, scaleway/fr-par]}
"""

TARGET = """
contexts: [aws, scw]
regions:
  aws/us-east-1:
    context: aws
    nodes: {topology.kubernetes.io/region: us-east-1}
    pods: {bascule.io/region: aws-us-east-1}
    cidrs: [192.0.2.0/25]
  aws/eu-west-3:
    context: aws
    nodes: {topology.kubernetes.io/region: eu-west-3}
    pods: {bascule.io/region: aws-eu-west-3}
    cidrs: [192.0.2.128/25]
  scaleway/fr-par:
    context: scw
    pods: {bascule.io/region: scaleway-fr-par}
    cidrs: [198.51.100.0/24, "2001:db8::/32"]
components:
  gateway: {namespace: rag, selector: {app: gateway}, port: 8080}
  retriever: {namespace: rag, selector: {app: retriever}, port: 8080}
  store: {namespace: rag, selector: {app: store}, port: 8080, kind: StatefulSet}
  llm: {namespace: rag, selector: {app: llm}, port: 8080}
  aws-sts: {namespace: identity, selector: {app: aws-sts}, port: 8080}
protected_namespaces: [payments]
allow_coredns_override: true
allow_data_loss: true
"""

COREFILE = """.:53 {
    errors
    health {
       lameduck 5s
    }
    ready
    kubernetes cluster.local in-addr.arpa ip6.arpa {
       pods insecure
       fallthrough in-addr.arpa ip6.arpa
       ttl 30
    }
    forward . /etc/resolv.conf
    cache 30
    loop
    reload
    loadbalance
}
"""

NODES = {
    "aws": {"use1-a": "us-east-1", "use1-b": "us-east-1", "euw3-a": "eu-west-3"},
    "scw": {"par-a": "fr-par", "par-b": "fr-par"},
}
PLACES = {
    "aws/us-east-1": ("aws", ["use1-a", "use1-b"]),
    "aws/eu-west-3": ("aws", ["euw3-a"]),
    "scaleway/fr-par": ("scw", ["par-a", "par-b"]),
}


def design() -> Design:
    return parse_design(DESIGN, "kube-three.yaml")


def mapping(text: str = TARGET) -> KubeMapping:
    d = design()
    return bind(parse_target(text, "target.yaml", d), d)


def _slug(region: str) -> str:
    return region.replace("/", "-")


def _workload(
    name: str, region: str, replicas: int, namespace: str = "rag"
) -> list[tuple[str, dict[str, Any]]]:
    """A component's objects in one region: its workload, pods (and volumes, HPA)."""
    _, nodes = PLACES[region]
    labels = {"app": name, "bascule.io/region": _slug(region)}
    stateful = name == "store"
    kind = "StatefulSet" if stateful else "Deployment"
    workload_name = f"{name}-{_slug(region)}"
    out: list[tuple[str, dict[str, Any]]] = [
        (
            f"apps/v1/{kind.lower()}s",
            {
                "metadata": {"name": workload_name, "namespace": namespace, "labels": dict(labels)},
                "spec": {
                    "replicas": replicas,
                    "selector": {"matchLabels": dict(labels)},
                    "template": {
                        "metadata": {"labels": dict(labels)},
                        "spec": {
                            "nodeSelector": {"topology.kubernetes.io/region": region.split("/")[1]},
                            "containers": [{"name": name, "image": "bascule-stack:test"}],
                        },
                    },
                },
                "status": {"replicas": replicas, "readyReplicas": replicas},
            },
        )
    ]
    owner = (
        {"apiVersion": "apps/v1", "kind": "StatefulSet", "name": workload_name, "controller": True}
        if stateful
        else {
            "apiVersion": "apps/v1",
            "kind": "ReplicaSet",
            "name": f"{workload_name}-5d8f",
            "controller": True,
        }
    )
    for i in range(replicas):
        pod_name = f"{workload_name}-{i}" if stateful else f"{workload_name}-5d8f-{i:05d}"
        volumes = []
        if stateful:
            claim = f"data-{pod_name}"
            volumes = [{"name": "data", "persistentVolumeClaim": {"claimName": claim}}]
            out.append(
                (
                    "v1/persistentvolumeclaims",
                    {
                        "metadata": {"name": claim, "namespace": namespace, "labels": dict(labels)},
                        "spec": {
                            "accessModes": ["ReadWriteOnce"],
                            "resources": {"requests": {"storage": "1Gi"}},
                        },
                        "status": {"phase": "Bound"},
                    },
                )
            )
        out.append(
            (
                "v1/pods",
                {
                    "metadata": {
                        "name": pod_name,
                        "namespace": namespace,
                        "labels": dict(labels),
                        "ownerReferences": [dict(owner, uid=f"uid-{workload_name}")],
                    },
                    "spec": {
                        "nodeName": nodes[i % len(nodes)],
                        "containers": [{"name": name, "image": "bascule-stack:test"}],
                        "volumes": volumes,
                    },
                    "status": {"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}]},
                },
            )
        )
    if name == "gateway":
        out.append(
            (
                "autoscaling/v2/horizontalpodautoscalers",
                {
                    "metadata": {"name": workload_name, "namespace": namespace, "labels": dict(labels)},
                    "spec": {
                        "scaleTargetRef": {
                            "apiVersion": "apps/v1",
                            "kind": "Deployment",
                            "name": workload_name,
                        },
                        "maxReplicas": 6,
                        "minReplicas": 1,
                    },
                    "status": {"currentReplicas": replicas, "desiredReplicas": replicas},
                },
            )
        )
    return out


def populate(clusters: dict[str, Cluster]) -> None:
    """Seed both clusters with the world described in the module docstring."""
    for cluster_name, nodes in NODES.items():
        cluster = clusters[cluster_name]
        for node, region in nodes.items():
            cluster.seed(
                "v1/nodes",
                {
                    "metadata": {
                        "name": node,
                        "labels": {"topology.kubernetes.io/region": region, "kubernetes.io/hostname": node},
                    },
                    "spec": {"podCIDR": "10.244.0.0/24"} if node.endswith("-b") else {},
                    "status": {"conditions": [{"type": "Ready", "status": "True"}]},
                },
            )
        cluster.seed(
            "v1/configmaps",
            {"metadata": {"name": "coredns", "namespace": "kube-system"}, "data": {"Corefile": COREFILE}},
        )
    d = design()
    for name, spec in d.components.items():
        for region, placement in spec.replicas.items():
            for resource, obj in _workload(name, region, placement.replicas):
                clusters[PLACES[region][0]].seed(resource, obj)
    for resource, obj in _workload("aws-sts", "aws/us-east-1", 1, namespace="identity"):
        clusters["aws"].seed(resource, obj)


@dataclass
class World:
    """Two running emulated clusters holding the world, a kubeconfig for them, and clients."""

    clusters: dict[str, Cluster]
    kubeconfig: Path
    mapping: KubeMapping
    apis: dict[str, KubeApi]

    def snapshot(self) -> dict[str, dict[Any, Any]]:
        """Every object of every cluster, without server-managed metadata."""
        return {name: comparable(cluster.objects()) for name, cluster in self.clusters.items()}

    def request_count(self) -> int:
        return sum(len(c.requests()) for c in self.clusters.values())

    def created(self) -> list[tuple[str, Any]]:
        """Objects carrying bascule's run label, in any cluster."""
        return [
            (name, key)
            for name, cluster in self.clusters.items()
            for key, obj in cluster.objects().items()
            if RUN_LABEL in ((obj.get("metadata") or {}).get("labels") or {})
        ]


RBAC = Path(__file__).resolve().parent.parent / "deploy" / "rbac.yaml"


@contextmanager
def world(tmp: Path, *, chaos_mesh: bool = True, target: str = TARGET) -> Iterator[World]:
    """The world, its API servers enforcing ``deploy/rbac.yaml`` on bascule's requests."""
    with running(Cluster("aws", chaos_mesh=chaos_mesh), Cluster("scw", chaos_mesh=chaos_mesh)) as (aws, scw):
        clusters = {"aws": aws, "scw": scw}
        populate(clusters)
        granted = rbac_rules(RBAC)
        # The manifest binds bascule-workloads in `rag`, and says to copy that binding to every
        # mapped namespace: here `identity` too.
        granted |= {replace(rule, namespace="identity") for rule in granted if rule.namespace == "rag"}
        for cluster in clusters.values():
            cluster.emulator.allowed = granted
        kubeconfig = write_kubeconfig(tmp / "kubeconfig", clusters)
        bound = mapping(target)
        apis = connect(bound.target, kubeconfig)
        try:
            yield World(clusters, kubeconfig, bound, apis)
        finally:
            for api in apis.values():
                api.close()


def touch_of(fault: Fault, selector: Selector) -> Touch:
    """What `fault` on `selector` touches in the world's design, as the planner resolves it."""
    touch, problems = resolve(design(), fault, selector, ("phases", 0))
    assert not problems, problems
    return touch
