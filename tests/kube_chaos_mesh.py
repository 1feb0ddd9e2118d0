"""Chaos Mesh's real controller-manager for a test cluster (``running_control_plane(…,
chaos_mesh=True)``), and a stand-in for its chaos-daemon.

The controller-manager is Chaos Mesh's own ``cmd/chaos-controller-manager``, built by
``scripts/build-control-plane`` from the module whose CRDs the fixture installs. It runs against one
API server, configured through the environment as Chaos Mesh's Helm chart configures it
(``helm/chaos-mesh/templates/controller-manager-deployment.yaml`` and its ``values.yaml``), with
these differences, each for a reason:

- it authenticates as the cluster's administrator (``system:masters``), not as the chart's
  ServiceAccount and ClusterRole;
- leader election is off (one replica);
- it serves its own admission webhooks, registered as the chart registers them (`register_webhooks`:
  defaulting and validation per kind of the chart's ``webhook.CRDS``, and ``/validate-auth``, which
  checks by SubjectAccessReview that whoever creates a chaos object may create it in the namespaces
  it affects) — in place of ``chaosmesh-webhook``, which serves the same ``Default`` and
  ``Validate*`` methods to the clusters without a controller-manager;
- no chaosd (``CHAOSD_SECURITY_MODE=false``: only PhysicalMachineChaos uses it).

Towards the daemon, mutual TLS as the chart's default (``chaosDaemon.mtls.enabled: true``) sets it
up: certificates made as the chart makes them (`make_daemon_tls`), the controller given the CA and
its client certificate (``CHAOS_MESH_CA_CERT``, ``CHAOS_DAEMON_CLIENT_CERT``, ``…_KEY``), the stand-in
requiring a client certificate of that CA as the real daemon does.

Where it dials the daemon: it looks, in its namespace's EndpointSlices whose name begins with
``chaos-daemon-``, for an endpoint whose ``nodeName`` is the target pod's node, and dials that
endpoint's first address on ``CHAOS_DAEMON_SERVICE_PORT``. In a cluster the EndpointSlice controller
writes them from the daemon's DaemonSet pods; here `register_daemon` writes one
(``chaos-daemon-standin``) giving every node `DAEMON_ADDRESS`. The API server refuses a loopback
address there (``may not be in the loopback range``), so the controller-manager and the daemon run
in a network namespace of their own (``unshare --net``, hence root), where `DAEMON_ADDRESS` is an
address of its loopback interface: nothing the controller dials leaves that namespace. It reaches
its API server, and the API server its webhooks, through two relays (``tests/unix_relay.py``)
joined by Unix sockets in the fixture's directory — 127.0.0.1 on either side.

The chaos-daemon is a STAND-IN (``tests/controlplane/chaos-daemon-standin``): with no container
runtime the real one cannot enter a container, so no packet is shaped and no HTTP is proxied. The
stand-in serves Chaos Mesh's own gRPC service definition (``pkg/chaosdaemon/pb``), answers every
call with success and appends each to a file (`ChaosMesh.calls`): what Chaos Mesh's controller
decided to inject and to recover, for which pod — a real observation of the controller, not of a
data plane. Chaos Mesh's finalizer (``chaos-mesh/records``), the records of each chaos object, the
PodNetworkChaos and PodHttpChaos objects and the pod changes of a ``pod-failure`` (its containers'
images swapped for the pause image) are all the real controller's.
"""

from __future__ import annotations

import base64
import json
import os
import sys
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import httpx
import pytest
from control_plane import (
    BINARIES,
    REQUIRED,
    Admin,
    ApiServer,
    Process,
    _certificate,
    _key,
    _start,
    _wait,
    _write_key,
    free_port,
)
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

CHAOS_MESH_FILES = ("chaos-controller-manager", "chaos-daemon-standin")
"""What ``chaos_mesh=True`` needs beside the control plane, built into the same directory."""

NEEDS_CHAOS_MESH = pytest.mark.skipif(
    (BINARIES is None or not all((BINARIES / f).is_file() for f in CHAOS_MESH_FILES) or os.geteuid() != 0)
    and not REQUIRED,
    reason="Chaos Mesh's controller-manager and the chaos-daemon stand-in are not built "
    "(run scripts/build-control-plane), or this is not root (its network namespace needs it)",
)
"""For the tests that run Chaos Mesh's controller-manager."""

RELAY = Path(__file__).resolve().parent / "unix_relay.py"

DAEMON_ADDRESS = "10.244.255.1"
"""The chaos-daemon's address, on the loopback interface of Chaos Mesh's own network namespace
(the API server refuses a loopback address in an EndpointSlice)."""
DAEMON_PORT = 31767
"""The chart's ``chaosDaemon.grpcPort``."""
INSIDE_API_PORT = 6443
"""Where the controller-manager reaches its API server inside its namespace (relayed)."""
INSIDE_WEBHOOK_PORT = 9443
"""Where the controller-manager serves its webhooks inside its namespace (the chart's port)."""

NAMESPACE = "chaos-mesh"
"""Where Chaos Mesh runs (the chart's release namespace): the controller's ``NAMESPACE``, where it
looks for its daemons' EndpointSlices."""

FINALIZER = "chaos-mesh/records"
"""The finalizer Chaos Mesh's controller puts on each chaos object it reconciles and removes once
every record of the object is ``Not Injected``."""

PAUSE_IMAGE = "gcr.io/google-containers/pause:latest"
"""The image a ``pod-failure`` swaps in (the controller's default ``POD_FAILURE_PAUSE_IMAGE``)."""

WEBHOOK_KINDS = (
    "podchaos",
    "iochaos",
    "timechaos",
    "networkchaos",
    "kernelchaos",
    "stresschaos",
    "awschaos",
    "azurechaos",
    "gcpchaos",
    "dnschaos",
    "jvmchaos",
    "schedule",
    "workflow",
    "httpchaos",
    "blockchaos",
    "physicalmachinechaos",
    "physicalmachine",
    "statuscheck",
    "remotecluster",
)
"""The chart's ``webhook.CRDS`` (``helm/chaos-mesh/values.yaml``): a mutating and a validating
webhook each, on ``/mutate-chaos-mesh-org-v1alpha1-<kind>`` and ``/validate-…``."""

_PLURAL = {"schedule": "schedules", "workflow": "workflows", "physicalmachine": "physicalmachines"}
_PLURAL |= {"statuscheck": "statuschecks", "remotecluster": "remoteclusters"}


@dataclass(frozen=True)
class DaemonCall:
    """One call the controller made to the chaos-daemon stand-in."""

    time: float
    """Seconds since the epoch, when the stand-in received it."""
    method: str
    """The ChaosDaemon method: ``SetTcs``, ``SetIptablesChains``, ``FlushIPSets``, ``ApplyHttpChaos``…"""
    chaos: str
    """The namespaced name the controller sent with it (the PodNetworkChaos or PodHttpChaos, named
    after the pod); empty when none was sent."""
    request: dict[str, Any]
    """The request in protobuf's JSON mapping (proto field names)."""


@dataclass
class ChaosMesh:
    """Chaos Mesh's network namespace (its first process), and in it the controller-manager, the
    daemon stand-in and the relays, for one API server."""

    namespace: Process
    processes: list[Process]
    """The relays, then the controller-manager."""
    directory: Path
    calls_file: Path
    webhook_url: str
    """The controller-manager's webhook server, as the API server reaches it (through the relays)."""
    started_in: float
    """Seconds from creating the namespace to the controller's webhooks answering."""
    daemon_argv: list[str] = field(default_factory=list)
    daemon: Process | None = None

    def calls(self, method: str | None = None) -> list[DaemonCall]:
        """Every call the stand-in recorded, in order (of `method` only, if given)."""
        if not self.calls_file.exists():
            return []
        found = []
        for line in self.calls_file.read_text(encoding="utf-8").splitlines():
            record = json.loads(line)
            call = DaemonCall(
                float(record["time"]), record["method"], record["chaos"], record.get("request") or {}
            )
            if method is None or call.method == method:
                found.append(call)
        return found

    def stop_daemon(self) -> None:
        """Stop the stand-in (as a daemon pod gone): the controller's calls to it fail."""
        if self.daemon is not None:
            self.daemon.stop()

    def start_daemon(self) -> None:
        """Start the stand-in (again) on the daemon's address, appending to the same file."""
        self.daemon = _start("chaos-daemon-standin", self.daemon_argv, self.directory)
        _netns_wait(self.daemon, "chaos-daemon-standin", "listening on")

    def check(self) -> None:
        for process in (self.namespace, *self.processes):
            process.check()
        if self.daemon is not None:
            self.daemon.check()

    def stop(self) -> None:
        for process in reversed(self.processes):
            process.stop()
        if self.daemon is not None:
            self.daemon.stop()
        self.namespace.stop()


def register_webhooks(admin: Admin, url: str, ca: Path) -> None:
    """Chaos Mesh's mutating and validating webhook configurations as its chart writes them, on
    `url` (the controller-manager's webhook server) rather than on its Service; in place of those
    registered for `chaosmesh-webhook`."""
    bundle = base64.b64encode(ca.read_bytes()).decode()

    def hook(name: str, path: str, resources: list[str]) -> dict[str, Any]:
        return {
            "name": name,
            "clientConfig": {"url": f"{url}{path}", "caBundle": bundle},
            "rules": [
                {
                    "apiGroups": ["chaos-mesh.org"],
                    "apiVersions": ["v1alpha1"],
                    "operations": ["CREATE", "UPDATE"],
                    "resources": resources,
                }
            ],
            "sideEffects": "None",
            "admissionReviewVersions": ["v1", "v1beta1"],
            "failurePolicy": "Fail",
            "timeoutSeconds": 5,
        }

    for kind, action, letter in (
        ("MutatingWebhookConfiguration", "mutate", "m"),
        ("ValidatingWebhookConfiguration", "validate", "v"),
    ):
        hooks = [
            hook(f"{letter}{crd}.kb.io", f"/{action}-chaos-mesh-org-v1alpha1-{crd}", [_PLURAL.get(crd, crd)])
            for crd in WEBHOOK_KINDS
        ]
        if action == "validate":
            hooks.append(hook("vauth.kb.io", "/validate-auth", ["*"]))
        # Replacing those of `chaosmesh-webhook`, registered with the CRDs.
        plural = f"{kind.lower()}s"
        admin.request(
            "DELETE", f"/apis/admissionregistration.k8s.io/v1/{plural}/chaos-mesh-{action}", ok=(404,)
        )
        admin.apply(
            {
                "apiVersion": "admissionregistration.k8s.io/v1",
                "kind": kind,
                "metadata": {"name": f"chaos-mesh-{action}"},
                "webhooks": hooks,
            }
        )


def register_daemon(admin: Admin, nodes: list[str]) -> None:
    """The chaos-daemon EndpointSlice (see the module's docstring): `DAEMON_ADDRESS` for each of
    `nodes`, replacing the one written before."""
    path = f"/apis/discovery.k8s.io/v1/namespaces/{NAMESPACE}/endpointslices"
    admin.request("DELETE", f"{path}/chaos-daemon-standin", ok=(404,))
    admin.request(
        "POST",
        path,
        {
            "apiVersion": "discovery.k8s.io/v1",
            "kind": "EndpointSlice",
            "metadata": {
                "name": "chaos-daemon-standin",
                "namespace": NAMESPACE,
                "labels": {"kubernetes.io/service-name": "chaos-daemon"},
            },
            "addressType": "IPv4",
            "endpoints": [
                {"addresses": [DAEMON_ADDRESS], "nodeName": node, "conditions": {"ready": True}}
                for node in nodes
            ],
            "ports": [{"name": "grpc", "port": DAEMON_PORT, "protocol": "TCP"}],
        },
    )


@dataclass(frozen=True)
class DaemonTls:
    """The mutual TLS between the controller-manager and its daemons, made as the chart makes it
    (``helm/chaos-mesh/templates/_certs.tpl``): a CA of its own, the daemon's certificate for
    ``chaos-daemon.chaos-mesh.org`` (the name the controller checks), the controller's for
    ``controller-manager.chaos-mesh.org``; each also for ``localhost``."""

    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path


def make_daemon_tls(directory: Path) -> DaemonTls:
    directory.mkdir(parents=True, exist_ok=True)
    ca_key = _key()
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "chaos-mesh-ca")])
    ca = _certificate(ca_name, ca_key, ca_name, ca_key, ca=True)
    pem = serialization.Encoding.PEM
    (directory / "ca.crt").write_bytes(ca.public_bytes(pem))
    files = []
    for name, usage in (
        ("chaos-daemon.chaos-mesh.org", ExtendedKeyUsageOID.SERVER_AUTH),
        ("controller-manager.chaos-mesh.org", ExtendedKeyUsageOID.CLIENT_AUTH),
    ):
        key = _key()
        cert = _certificate(
            x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]),
            key,
            ca_name,
            ca_key,
            usage=usage,
            names=[x509.DNSName("localhost"), x509.DNSName(name)],
        )
        stem = name.split(".", 1)[0]
        (directory / f"{stem}.crt").write_bytes(cert.public_bytes(pem))
        files += [directory / f"{stem}.crt", _write_key(directory / f"{stem}.key", key)]
    return DaemonTls(directory / "ca.crt", *files)


def _netns_wait(process: Process, what: str, marker: str) -> None:
    _wait(process, lambda: marker in process.log.read_text(errors="replace"), what, 30)


def start_chaos_mesh(server: ApiServer, binaries: Path, directory: Path) -> ChaosMesh:
    """Chaos Mesh's network namespace, the daemon stand-in and the relays in it, then its
    controller-manager against `server`, whose CRDs must already be established; its webhooks
    registered (`register_webhooks`); until its webhook server answers through the relay."""
    own = directory / "chaos-mesh"
    own.mkdir(parents=True, exist_ok=True)
    server.admin.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NAMESPACE}})
    certs = own / "certs"
    certs.mkdir(exist_ok=True)
    (certs / "tls.crt").write_bytes(server.pki.server_cert.read_bytes())
    (certs / "tls.key").write_bytes(server.pki.server_key.read_bytes())
    (certs / "tls.key").chmod(0o600)
    # Inside the namespace the ports are the chart's defaults: nothing else listens there.
    inside = replace(server, url=f"https://127.0.0.1:{INSIDE_API_PORT}")
    kubeconfig = inside.write_admin_kubeconfig(own / "admin.kubeconfig")
    webhook_port = free_port()
    tls = make_daemon_tls(own / "daemon-tls")
    calls_file = own / "daemon-calls.jsonl"
    began = time.monotonic()
    namespace = _start(
        "chaos-mesh-netns",
        [
            "unshare",
            "--net",
            "--",
            "sh",
            "-c",
            f"ip link set lo up && ip address add {DAEMON_ADDRESS}/32 dev lo && echo ready >&2 "
            "&& exec sleep 7200",
        ],
        own,
    )
    found = ChaosMesh(namespace, [], own, calls_file, f"https://127.0.0.1:{webhook_port}", 0.0)
    try:
        _netns_wait(namespace, "Chaos Mesh's network namespace", "ready")
        enter = ["nsenter", f"--net=/proc/{namespace.popen.pid}/ns/net", "--"]
        relay = [sys.executable, str(RELAY), "--seconds", "7200"]
        found.processes.append(
            _start(
                "relay-inside",
                [
                    *enter,
                    *relay,
                    f"tcp:127.0.0.1:{INSIDE_API_PORT}=unix:{own / 'api.sock'}",
                    f"unix:{own / 'hook.sock'}=tcp:127.0.0.1:{INSIDE_WEBHOOK_PORT}",
                ],
                own,
            )
        )
        found.processes.append(
            _start(
                "relay-outside",
                [
                    *relay,
                    f"unix:{own / 'api.sock'}=tcp:127.0.0.1:{server.url.rsplit(':', 1)[1]}",
                    f"tcp:127.0.0.1:{webhook_port}=unix:{own / 'hook.sock'}",
                ],
                own,
            )
        )
        found.daemon_argv = [
            *enter,
            str(binaries / "chaos-daemon-standin"),
            f"-listen={DAEMON_ADDRESS}:{DAEMON_PORT}",
            f"-record={calls_file}",
            f"-ca={tls.ca}",
            f"-cert={tls.server_cert}",
            f"-key={tls.server_key}",
        ]
        found.start_daemon()
        for process in found.processes:
            _netns_wait(process, process.name, "relaying")
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": str(own),
            "KUBECONFIG": str(kubeconfig),
            # As the chart sets them (its values.yaml defaults), but for the differences the
            # module's docstring gives.
            "NAMESPACE": NAMESPACE,
            "TEMPLATE_NAMESPACE": NAMESPACE,
            "ALLOW_HOST_NETWORK_TESTING": "false",
            "TARGET_NAMESPACE": "",
            "QPS": "30",
            "BURST": "50",
            "CLUSTER_SCOPED": "true",
            "TZ": "UTC",
            "CHAOS_DAEMON_SERVICE_PORT": str(DAEMON_PORT),
            "BPFKI_PORT": "50051",
            "ENABLED_CONTROLLERS": "*",
            "ENABLED_WEBHOOKS": "*",
            "TEMPLATE_LABELS": "app.kubernetes.io/component:template",
            "CONFIGMAP_LABELS": "app.kubernetes.io/component:webhook",
            "ENABLE_FILTER_NAMESPACE": "false",
            "CHAOS_DNS_SERVICE_NAME": "chaos-mesh-dns-server",
            "CHAOS_DNS_SERVICE_PORT": "9288",
            "SECURITY_MODE": "true",
            "CHAOSD_SECURITY_MODE": "false",
            "ENABLE_LEADER_ELECTION": "false",
            "WEBHOOK_HOST": "127.0.0.1",
            "WEBHOOK_PORT": str(INSIDE_WEBHOOK_PORT),
            "METRICS_HOST": "127.0.0.1",
            "METRICS_PORT": "10080",
            "CERTS_DIR": str(certs),
            # chaosDaemon.mtls.enabled (the chart's default): the chart mounts these files.
            "CHAOS_MESH_CA_CERT": str(tls.ca),
            "CHAOS_DAEMON_CLIENT_CERT": str(tls.client_cert),
            "CHAOS_DAEMON_CLIENT_KEY": str(tls.client_key),
        }
        controller = _start(
            "chaos-controller-manager", [*enter, str(binaries / "chaos-controller-manager")], own, env=env
        )
        found.processes.append(controller)
        register_webhooks(server.admin, found.webhook_url, server.pki.ca)
        # Any answer of its webhook server through the relays (a GET is refused): it serves.
        _wait(
            controller,
            lambda: httpx.get(f"{found.webhook_url}/validate-auth", verify=False, timeout=2).status_code > 0,
            "chaos-controller-manager",
            120,
        )
    except BaseException:
        found.stop()
        raise
    found.started_in = time.monotonic() - began
    return found
