"""The reference stack as Kubernetes manifests: what ``bascule render kubernetes`` writes. Pure:
a design and its target file in, a list of objects (plain dicts) out, in apply order (their order
and their YAML are `manifests`'s).

For each component in each region where the design places it (and each identity dependency in
its region), in the context, namespace and labels the target file gives it:

- a ``Deployment`` (or the ``StatefulSet`` the target file names) with the placed replica count,
  pinned to the region's nodes (``nodeSelector`` = the region's ``nodes`` labels), running
  ``python -m bascule.stack.<kind>`` with the command line the local target gives the same
  replica (`bascule.stack.layout.replica_argv`), adapted: it binds ``0.0.0.0`` on a fixed port
  (8080, or the target file's ``port``), names resolve through the cluster's DNS (no
  ``--dns-server``), each upstream is the callee's Service, and the replica's name is its pod's;
  readiness on ``/readyz``, liveness and start-up on ``/healthz``;
- a ``Service`` named ``<component>--<region slug>`` (``retriever--aws-us-east-1``) selecting
  those pods — the double dash tells the region apart from the component in a host name;
- a ``HorizontalPodAutoscaler`` where the design lets a region grow (``max_replicas``): min =
  ``replicas``, max = ``max_replicas``, on CPU, which the ``control-plane`` fault pins;

and, per context and namespace: the ``Namespace``, the ``bascule-design`` ConfigMap the gateways
read (the design as bascule parsed it), and the ``bascule-tokens`` Secret (the identity token
secret, given by the caller — never generated here, never in a file of the repository). Pods read
both once, at start: their templates carry a digest of each (``bascule.io/design-sha256``,
``bascule.io/token-secret-sha256``), so that a changed design or secret rolls every pod using it.

Labels: every object carries ``app.kubernetes.io/managed-by: bascule`` (``bascule deploy`` only
changes objects with it), ``bascule.io/design``, ``bascule.io/component`` and ``bascule.io/region``;
pods, workloads and HPAs also carry the target file's selector and region ``pods`` labels (they
win over bascule's), so that the faults find them. Every object is annotated with the context it
belongs to (``bascule.io/context``).

Upstreams in another context are reached through the Kubernetes Multi-Cluster Services API: the
callee's Service is exported (``ServiceExport``) and called as
``<service>.<namespace>.svc.clusterset.local``; the clusters need an MCS implementation.

Not expressible here, refused with `UnrenderableError`: own services (``command:`` or ``url:``),
names too long for a Service, an identity dependency in a region the target file does not map,
and a protected namespace.
"""

from __future__ import annotations

import base64
import hashlib
import re
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

import yaml

from bascule.errors import TargetError
from bascule.model.design import DependencyKind, Design
from bascule.model.names import region_slug
from bascule.model.topology import Endpoint
from bascule.stack.layout import ProcessKind, ReplicaSpec, StackLayout, layout, replica_argv
from bascule.targets.kubernetes.manifests import CONTEXT_ANNOTATION, MANAGED_BY, apply_order
from bascule.targets.kubernetes.mapping import KubeMapping, WorkloadKind

__all__ = [
    "COMPONENT_LABEL",
    "DEFAULT_PORT",
    "DESIGN_CONFIGMAP",
    "DESIGN_DIGEST",
    "DESIGN_LABEL",
    "DESIGN_PATH",
    "REGION_LABEL",
    "RUN_AS_USER",
    "SECRET_DIGEST",
    "TOKEN_SECRET",
    "TOKEN_SECRET_KEY",
    "UnrenderableError",
    "render_manifests",
    "unrenderable",
    "workload_name",
]

DEFAULT_PORT: Final = 8080
"""The port every rendered container serves HTTP on, unless the target file gives another."""
RUN_AS_USER: Final = 10001
"""The image's non-root user (``deploy/Dockerfile``)."""

DESIGN_LABEL: Final = "bascule.io/design"
COMPONENT_LABEL: Final = "bascule.io/component"
REGION_LABEL: Final = "bascule.io/region"

DESIGN_CONFIGMAP: Final = "bascule-design"
DESIGN_DIR: Final = "/etc/bascule"
DESIGN_PATH: Final = f"{DESIGN_DIR}/design.yaml"
DESIGN_DIGEST: Final = "bascule.io/design-sha256"
SECRET_DIGEST: Final = "bascule.io/token-secret-sha256"
"""Pod-template annotations: the first 16 hex digits of the SHA-256 of the design text and of the
token secret the pods read at start, so that changing either rolls them."""
TOKEN_SECRET: Final = "bascule-tokens"
TOKEN_SECRET_KEY: Final = "token-secret"
_TOKEN_ENV: Final = "BASCULE_TOKEN_SECRET"
_POD_NAME: Final = "$(POD_NAME)"

CLUSTERSET_DOMAIN: Final = "svc.clusterset.local"
_MCS_API: Final = "multicluster.x-k8s.io/v1alpha1"

_DNS_1035 = re.compile(r"^[a-z]([-a-z0-9]{0,61}[a-z0-9])?$")

# Resources measured on the reference services at rest (RSS 40-72 MB, see docs/kubernetes.md):
# requests leave room for load, the memory limit for the store's log and index to grow.
_RESOURCES: Final = {"requests": {"cpu": "50m", "memory": "128Mi"}, "limits": {"memory": "256Mi"}}
_CPU_TARGET: Final = 70
"""Average CPU utilization (% of the request) a growing region's HPA scales on."""

Json = dict[str, Any]


class UnrenderableError(TargetError):
    """The design (or its target file) uses something the manifests cannot express."""


@dataclass(frozen=True)
class _Workload:
    """One component (or identity dependency) in one region, as it runs in a cluster."""

    endpoint: Endpoint
    kind: ProcessKind
    context: str
    namespace: str
    labels: Mapping[str, str]
    """Its pods' labels: bascule's, then the target file's selector and region pod labels."""
    selector: Mapping[str, str]
    replicas: int
    ceiling: int
    port: int
    workload_kind: WorkloadKind
    nodes: Mapping[str, str]
    first: ReplicaSpec

    @property
    def name(self) -> str:
        return workload_name(self.endpoint.name, self.endpoint.region)


def workload_name(component: str, region: str) -> str:
    """``retriever``, ``aws/us-east-1`` → ``retriever--aws-us-east-1``: its Deployment, Service and HPA."""
    return f"{component}--{region_slug(region)}"


def unrenderable(design: Design) -> list[str]:
    """Why the design's stack cannot be rendered as manifests, one reason per line (empty: it can)."""
    reasons: list[str] = []
    for name, spec in design.components.items():
        if spec.command is not None:
            reasons.append(
                f"component {name!r} is an own service started from a command (command:): bascule "
                "cannot build its image; deploy it yourself and map it in the target file"
            )
        elif spec.url is not None:
            reasons.append(
                f"component {name!r} is an own service already running at a URL (url:): there is "
                "nothing for bascule to deploy; map it in the target file instead"
            )
    names = list(design.components) + [
        n for n, d in design.dependencies.items() if d.kind is DependencyKind.IDENTITY
    ]
    for name in names:
        if "--" in name:
            reasons.append(f"{name!r} contains '--', which separates component and region in Service names")
    for region in design.region_map:
        if "--" in region_slug(region):
            reasons.append(
                f"region {region!r} gives the slug {region_slug(region)!r}: its '--' would be read as the "
                "separator of component and region in Service names"
            )
    return reasons


def _base_labels(design: Design, component: str, region: str) -> dict[str, str]:
    key, value = MANAGED_BY
    return {
        key: value,
        DESIGN_LABEL: design.id,
        COMPONENT_LABEL: component,
        REGION_LABEL: region_slug(region),
    }


def _workloads(design: Design, mapping: KubeMapping, stack: StackLayout, namespace: str) -> list[_Workload]:
    by_endpoint: dict[Endpoint, list[ReplicaSpec]] = defaultdict(list)
    for replica in stack.replicas:
        by_endpoint[replica.endpoint].append(replica)
    problems: list[str] = []
    out: list[_Workload] = []
    for endpoint, replicas in sorted(by_endpoint.items()):
        region = mapping.region(endpoint.region)
        if region is None:
            problems.append(
                f"{endpoint.name} runs in {endpoint.region}, which the target file does not map to a "
                "context: add the region there"
            )
            continue
        target = mapping.workload(endpoint.name)
        own_labels = dict(target.selector) if target is not None else {}
        labels = {**_base_labels(design, endpoint.name, endpoint.region), **own_labels, **region.pods}
        selector_keys = [*own_labels, *region.pods, COMPONENT_LABEL, REGION_LABEL]
        name = workload_name(endpoint.name, endpoint.region)
        if not _DNS_1035.match(name):
            problems.append(
                f"{name!r} ({endpoint.name} in {endpoint.region}) is not a valid Service name "
                "(at most 63 lower-case letters, digits and '-'): shorten the component's name"
            )
            continue
        out.append(
            _Workload(
                endpoint=endpoint,
                kind=replicas[0].kind,
                context=region.context,
                namespace=target.namespace if target is not None else namespace,
                labels=labels,
                selector={k: labels[k] for k in selector_keys},
                replicas=sum(1 for r in replicas if not r.reserve),
                ceiling=len(replicas),
                port=target.port if target is not None and target.port is not None else DEFAULT_PORT,
                workload_kind=target.kind if target is not None else WorkloadKind.DEPLOYMENT,
                nodes=dict(region.nodes),
                first=replicas[0],
            )
        )
    if problems:
        raise UnrenderableError("cannot render the stack:\n" + "\n".join(f"- {p}" for p in problems))
    return out


def _host(callee: _Workload, caller_context: str, cluster_domain: str) -> str:
    if callee.context == caller_context:
        return f"{callee.name}.{callee.namespace}.svc.{cluster_domain}"
    return f"{callee.name}.{callee.namespace}.{CLUSTERSET_DOMAIN}"


def _adapt(
    argv: Sequence[str], workload: _Workload, hosts: Mapping[str, str]
) -> tuple[list[str], list[str], bool]:
    """A local replica's command line made a container's: (command, args, needs the token secret)."""
    out: list[str] = []
    replace_next: dict[str, str] = {
        "--host": "0.0.0.0",
        "--port": str(workload.port),
        "--name": _POD_NAME,
        "--principal": _POD_NAME,
    }
    skip = False
    tokens = list(argv)
    for i, token in enumerate(tokens):
        if skip:
            skip = False
            continue
        if token == "--dns-server":
            # The cluster's DNS resolves Service names: the stack's own DNS server does not run here.
            skip = True
            continue
        previous = tokens[i - 1] if i > 0 else ""
        if previous in replace_next:
            out.append(replace_next[previous])
            continue
        adapted = token
        for old, new in hosts.items():
            adapted = adapted.replace(f"//{old}:", f"//{new}:")
        out.append(adapted)
    leftover = [t for t in out if ".bascule.internal" in t]
    if leftover:
        raise UnrenderableError(f"{workload.name}: no Service for {', '.join(leftover)}")
    needs_secret = workload.kind is ProcessKind.IDENTITY or "--identity-url" in out
    return out[:3], out[3:], needs_secret


def _meta(name: str, namespace: str | None, context: str, labels: Mapping[str, str]) -> Json:
    meta: Json = {"name": name}
    if namespace is not None:
        meta["namespace"] = namespace
    meta["labels"] = dict(labels)
    meta["annotations"] = {CONTEXT_ANNOTATION: context}
    return meta


def _container(workload: _Workload, command: list[str], args: list[str], image: str, secret: bool) -> Json:
    env: list[Json] = [{"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}]
    if secret:
        env.append(
            {
                "name": _TOKEN_ENV,
                "valueFrom": {"secretKeyRef": {"name": TOKEN_SECRET, "key": TOKEN_SECRET_KEY}},
            }
        )
    mounts: list[Json] = [{"name": "tmp", "mountPath": "/tmp"}]
    if workload.kind is ProcessKind.GATEWAY:
        mounts.append({"name": "design", "mountPath": DESIGN_DIR, "readOnly": True})

    def probe(path: str, period: int, failures: int) -> Json:
        return {
            "httpGet": {"path": path, "port": "http"},
            "periodSeconds": period,
            "timeoutSeconds": 1,
            "failureThreshold": failures,
        }

    return {
        "name": workload.kind.value,
        "image": image,
        "imagePullPolicy": "IfNotPresent",
        "command": command,
        "args": args,
        "env": env,
        "ports": [{"name": "http", "containerPort": workload.port, "protocol": "TCP"}],
        # Start-up: up to 60 s to import and seed the corpus; then liveness takes over.
        "startupProbe": probe("/healthz", 1, 60),
        "livenessProbe": probe("/healthz", 10, 3),
        "readinessProbe": probe("/readyz", 2, 2),
        "resources": {k: dict(v) for k, v in _RESOURCES.items()},
        "securityContext": {
            "allowPrivilegeEscalation": False,
            "readOnlyRootFilesystem": True,
            "runAsNonRoot": True,
            "runAsUser": RUN_AS_USER,
            "capabilities": {"drop": ["ALL"]},
        },
        "volumeMounts": mounts,
    }


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def _workload_object(workload: _Workload, container: Json, hpa: bool, inputs: Mapping[str, str]) -> Json:
    volumes: list[Json] = [{"name": "tmp", "emptyDir": {}}]
    if workload.kind is ProcessKind.GATEWAY:
        volumes.append({"name": "design", "configMap": {"name": DESIGN_CONFIGMAP}})
    pod_spec: Json = {
        "automountServiceAccountToken": False,
        # Service links would put one variable per Service into every container; some could read
        # as the services' own BASCULE_* flag fallbacks.
        "enableServiceLinks": False,
        "terminationGracePeriodSeconds": 10,
        "securityContext": {"runAsNonRoot": True, "seccompProfile": {"type": "RuntimeDefault"}},
        "containers": [container],
        "volumes": volumes,
    }
    if workload.nodes:
        pod_spec["nodeSelector"] = dict(workload.nodes)
    template_meta: Json = {"labels": dict(workload.labels)}
    if inputs:
        # Pods read the design and the token secret once, at start: a change to either must roll
        # them all, or restarted pods would disagree with the others (tokens signed with two secrets).
        template_meta["annotations"] = dict(inputs)
    spec: Json = {
        "selector": {"matchLabels": dict(workload.selector)},
        "template": {"metadata": template_meta, "spec": pod_spec},
    }
    if not hpa:
        # With an HPA, the HPA owns the count: a deploy that set it would undo its scaling.
        spec = {"replicas": workload.replicas, **spec}
    if workload.workload_kind is WorkloadKind.STATEFULSET:
        spec = {"serviceName": workload.name, "podManagementPolicy": "Parallel", **spec}
    return {
        "apiVersion": "apps/v1",
        "kind": workload.workload_kind.value,
        "metadata": _meta(workload.name, workload.namespace, workload.context, workload.labels),
        "spec": spec,
    }


def _hpa(workload: _Workload) -> Json:
    return {
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": _meta(workload.name, workload.namespace, workload.context, workload.labels),
        "spec": {
            "scaleTargetRef": {
                "apiVersion": "apps/v1",
                "kind": workload.workload_kind.value,
                "name": workload.name,
            },
            "minReplicas": workload.replicas,
            "maxReplicas": workload.ceiling,
            "metrics": [
                {
                    "type": "Resource",
                    "resource": {
                        "name": "cpu",
                        "target": {"type": "Utilization", "averageUtilization": _CPU_TARGET},
                    },
                }
            ],
        },
    }


def _service(workload: _Workload, base: Mapping[str, str]) -> Json:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": _meta(workload.name, workload.namespace, workload.context, base),
        "spec": {
            "type": "ClusterIP",
            "selector": dict(workload.selector),
            "ports": [{"name": "http", "port": workload.port, "targetPort": "http", "protocol": "TCP"}],
        },
    }


def _design_text(design: Design) -> str:
    # The design as parsed (defaults left out): what the gateways read is what bascule planned with.
    data = design.model_dump(mode="json", exclude_defaults=True)
    return yaml.safe_dump(data, sort_keys=False, allow_unicode=True)


def render_manifests(
    design: Design,
    mapping: KubeMapping,
    *,
    image: str,
    namespace: str,
    token_secret: str | None = None,
    cluster_domain: str = "cluster.local",
) -> list[Json]:
    """Every object of the design's reference stack on the clusters of `mapping`, in apply order
    (by context: namespaces, secrets, config maps, services, workloads, autoscalers).

    `namespace` holds the components and dependencies the target file does not map (labelled
    ``bascule.io/component``). `token_secret` is the identity services' HMAC secret, required when
    the design has an identity dependency: generate it at deploy time (``secrets.token_urlsafe``).
    Raises `UnrenderableError` for what manifests cannot express, ValueError for bad arguments."""
    if mapping.design.id != design.id:
        raise ValueError(f"the target file is bound to design {mapping.design.id!r}, not {design.id!r}")
    if not image.strip():
        raise ValueError("give the stack's image (built from deploy/Dockerfile)")
    if not _DNS_1035.match(namespace):
        raise ValueError(f"{namespace!r} is not a valid namespace name")
    reasons = unrenderable(design)
    if reasons:
        raise UnrenderableError("cannot render the stack:\n" + "\n".join(f"- {r}" for r in reasons))
    stack = layout(design)
    workloads = _workloads(design, mapping, stack, namespace)
    protected = sorted({w.namespace for w in workloads} & mapping.protected)
    if protected:
        raise UnrenderableError(
            f"namespace(s) {', '.join(protected)} are protected: the stack is never deployed there"
        )
    by_endpoint = {w.endpoint: w for w in workloads}
    route_ports = {
        r.name: by_endpoint[r.hop.target].port for r in stack.routes if r.hop.target in by_endpoint
    }

    if token_secret is not None and not token_secret:
        raise ValueError("token_secret is empty")
    text = _design_text(design)
    objects: list[Json] = []
    exported: set[Endpoint] = set()
    secret_places: set[tuple[str, str]] = set()
    design_places: set[tuple[str, str]] = set()
    namespaces: set[tuple[str, str]] = set()
    for workload in workloads:
        argv = replica_argv(
            design,
            stack,
            workload.first,
            design_path=DESIGN_PATH,
            route_ports=route_ports,
            dns_server=("127.0.0.1", 53),
            python="python",
        )
        hosts: dict[str, str] = {}
        for route in stack.routes_from(workload.endpoint):
            callee = by_endpoint[route.hop.target]
            hosts[route.host] = _host(callee, workload.context, cluster_domain)
            if callee.context != workload.context:
                exported.add(callee.endpoint)
        command, args, needs_secret = _adapt(argv, workload, hosts)
        place = (workload.context, workload.namespace)
        namespaces.add(place)
        if needs_secret:
            secret_places.add(place)
        if workload.kind is ProcessKind.GATEWAY:
            design_places.add(place)
        hpa = workload.ceiling > workload.replicas >= 1
        container = _container(workload, command, args, image, needs_secret)
        inputs: dict[str, str] = {}
        if workload.kind is ProcessKind.GATEWAY:
            inputs[DESIGN_DIGEST] = _digest(text)
        if needs_secret and token_secret:
            inputs[SECRET_DIGEST] = _digest(token_secret)
        objects.append(_workload_object(workload, container, hpa, inputs))
        if hpa:
            objects.append(_hpa(workload))
        base = _base_labels(design, workload.endpoint.name, workload.endpoint.region)
        objects.append(_service(workload, base))
    for endpoint in sorted(exported):
        workload = by_endpoint[endpoint]
        base = _base_labels(design, endpoint.name, endpoint.region)
        objects.append(
            {
                "apiVersion": _MCS_API,
                "kind": "ServiceExport",
                "metadata": _meta(workload.name, workload.namespace, workload.context, base),
            }
        )
    managed = {MANAGED_BY[0]: MANAGED_BY[1], DESIGN_LABEL: design.id}
    if secret_places:
        if not token_secret:
            raise ValueError(
                f"design {design.id!r} has an identity dependency: give token_secret, the HMAC secret "
                "its services share"
            )
        encoded = base64.b64encode(token_secret.encode("utf-8")).decode("ascii")
        for context, ns in sorted(secret_places):
            objects.append(
                {
                    "apiVersion": "v1",
                    "kind": "Secret",
                    "metadata": _meta(TOKEN_SECRET, ns, context, managed),
                    "type": "Opaque",
                    "data": {TOKEN_SECRET_KEY: encoded},
                }
            )
    for context, ns in sorted(design_places):
        objects.append(
            {
                "apiVersion": "v1",
                "kind": "ConfigMap",
                "metadata": _meta(DESIGN_CONFIGMAP, ns, context, managed),
                "data": {"design.yaml": text},
            }
        )
    for context, ns in sorted(namespaces):
        if ns != "default":
            objects.append(
                {
                    "apiVersion": "v1",
                    "kind": "Namespace",
                    "metadata": _meta(ns, None, context, {MANAGED_BY[0]: MANAGED_BY[1]}),
                }
            )
    return sorted(objects, key=apply_order)
