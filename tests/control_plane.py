"""A real Kubernetes control plane for the tests: etcd and kube-apiserver (and Chaos Mesh's
admission webhooks), built from the Go modules pinned under ``tests/controlplane`` by
``scripts/build-control-plane`` into a cache outside the clone, started on 127.0.0.1 with
certificates made here, and stopped by PID.

One etcd serves every API server (each under an etcd prefix of its own), so a second cluster costs
one kube-apiserver. Each API server serves TLS with a certificate of a CA made for the run,
authenticates an admin by client certificate (``system:masters``) and service accounts by the
tokens it signs, and authorizes by RBAC. Chaos Mesh's CRDs (from its Go module, copied into the
cache by the build script) and its admission webhooks (``chaosmesh-webhook``: Chaos Mesh's own
defaulting and validation code, served on 127.0.0.1 as its controller-manager serves it) are
installed when asked.

By default no controller, scheduler or kubelet runs: nothing reconciles, a deleted pod bound to a
node stays Terminating (no kubelet confirms it), a deleted volume claim keeps its protection
finalizer. With ``controllers=True`` each API server also gets a kube-controller-manager (the
controllers in `CONTROLLERS`, leader election off, the service-account signing key shared with the
API server), a kube-scheduler and kwok's controller (`Controllers`): nodes annotated
``kwok.x-k8s.io/node: fake`` become Ready, and the pods the scheduler binds to them Running; their
deletion is confirmed as a kubelet confirms it. With ``chaos_mesh=True`` each API server also gets
Chaos Mesh's CRDs and its real controller-manager, with a stand-in for its chaos-daemon
(`kube_chaos_mesh`).

Skipped where the binaries are not built, unless ``BASCULE_REQUIRE_CONTROL_PLANE=1`` (CI sets
it after building them): there a missing build fails, never skips.
"""

from __future__ import annotations

import base64
import contextlib
import datetime
import ipaddress
import json
import os
import shutil
import socket
import ssl
import subprocess
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import pytest
import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

if TYPE_CHECKING:
    from kube_chaos_mesh import ChaosMesh

ROOT = Path(__file__).resolve().parent.parent
BUILD = ROOT / "scripts" / "build-control-plane"
REQUIRED = os.environ.get("BASCULE_REQUIRE_CONTROL_PLANE") == "1"


def built_dir() -> Path | None:
    """The cache directory of the binaries for the pinned versions, if they are built."""
    if shutil.which("go") is None:
        return None
    try:
        printed = subprocess.run(
            [str(BUILD), "--print"], capture_output=True, text=True, timeout=60, check=True
        ).stdout.strip()
    except (subprocess.SubprocessError, OSError):
        return None
    found = Path(printed)
    return found if (found / "complete").is_file() else None


BINARIES = built_dir()
NEEDS_CONTROL_PLANE = pytest.mark.skipif(
    BINARIES is None and not REQUIRED,
    reason="the control plane is not built: run scripts/build-control-plane once "
    "(Go 1.26 and the Go module proxy; a cold build takes tens of minutes)",
)
"""For the tests that run a real etcd and kube-apiserver."""


CONTROLLER_FILES = ("kube-controller-manager", "kube-scheduler", "kwok", "kwok-stages.yaml")
"""What ``controllers=True`` needs beside the control plane, built into the same directory."""

NEEDS_CONTROLLERS = pytest.mark.skipif(
    (BINARIES is None or not all((BINARIES / f).is_file() for f in CONTROLLER_FILES)) and not REQUIRED,
    reason="kube-controller-manager, kube-scheduler and kwok are not built: run scripts/build-control-plane",
)
"""For the tests that run the controllers, the scheduler and kwok too."""


def require_control_plane() -> Path:
    """Tests marked `NEEDS_CONTROL_PLANE` reach here only with the binaries built, or required."""
    assert BINARIES is not None, (
        "BASCULE_REQUIRE_CONTROL_PLANE=1, but scripts/build-control-plane has not built the "
        "control plane for the pinned versions"
    )
    return BINARIES


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# -- certificates --


@dataclass(frozen=True)
class Pki:
    """Files of the run's CA, the API servers' serving certificate, the admin's client
    certificate and the service-account signing key."""

    ca: Path
    server_cert: Path
    server_key: Path
    admin_cert: Path
    admin_key: Path
    sa_key: Path
    sa_pub: Path


def _key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _write_key(path: Path, key: ec.EllipticCurvePrivateKey) -> Path:
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    path.chmod(0o600)
    return path


def _certificate(
    subject: x509.Name,
    key: ec.EllipticCurvePrivateKey,
    issuer: x509.Name,
    issuer_key: ec.EllipticCurvePrivateKey,
    *,
    ca: bool = False,
    usage: x509.ObjectIdentifier | None = None,
    names: Sequence[x509.GeneralName] = (),
) -> x509.Certificate:
    now = datetime.datetime.now(datetime.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if ca:
        builder = builder.add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
    if usage is not None:
        builder = builder.add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
    if names:
        builder = builder.add_extension(x509.SubjectAlternativeName(list(names)), critical=False)
    return builder.sign(issuer_key, hashes.SHA256())


def make_pki(directory: Path) -> Pki:
    """A CA of its own, valid one day, and what the API servers and the admin need from it."""
    directory.mkdir(parents=True, exist_ok=True)
    ca_key = _key()
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "bascule-test-ca")])
    ca = _certificate(ca_name, ca_key, ca_name, ca_key, ca=True)
    server_key = _key()
    server = _certificate(
        x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "kube-apiserver")]),
        server_key,
        ca_name,
        ca_key,
        usage=ExtendedKeyUsageOID.SERVER_AUTH,
        names=[
            x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
            x509.DNSName("localhost"),
            x509.DNSName("kubernetes.default.svc"),
        ],
    )
    admin_key = _key()
    admin = _certificate(
        x509.Name(
            [
                x509.NameAttribute(NameOID.ORGANIZATION_NAME, "system:masters"),
                x509.NameAttribute(NameOID.COMMON_NAME, "bascule-test-admin"),
            ]
        ),
        admin_key,
        ca_name,
        ca_key,
        usage=ExtendedKeyUsageOID.CLIENT_AUTH,
    )
    sa_key = _key()
    pem = serialization.Encoding.PEM
    (directory / "ca.crt").write_bytes(ca.public_bytes(pem))
    (directory / "server.crt").write_bytes(server.public_bytes(pem))
    (directory / "admin.crt").write_bytes(admin.public_bytes(pem))
    (directory / "sa.pub").write_bytes(
        sa_key.public_key().public_bytes(pem, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    return Pki(
        ca=directory / "ca.crt",
        server_cert=directory / "server.crt",
        server_key=_write_key(directory / "server.key", server_key),
        admin_cert=directory / "admin.crt",
        admin_key=_write_key(directory / "admin.key", admin_key),
        sa_key=_write_key(directory / "sa.key", sa_key),
        sa_pub=directory / "sa.pub",
    )


# -- processes --


@dataclass
class Process:
    """A process started here, in a session of its own, stopped by its PID."""

    name: str
    popen: subprocess.Popen[bytes]
    log: Path

    def check(self) -> None:
        if self.popen.poll() is not None:
            tail = self.log.read_text(errors="replace")[-3000:]
            raise AssertionError(f"{self.name} exited ({self.popen.returncode}): {tail}")

    def stop(self) -> None:
        if self.popen.poll() is None:
            self.popen.terminate()
            try:
                self.popen.wait(15)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait(10)


def _start(name: str, argv: list[str], directory: Path, *, env: Mapping[str, str] | None = None) -> Process:
    log = directory / f"{name}.log"
    popen = subprocess.Popen(
        argv,
        env=None if env is None else dict(env),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=log.open("wb"),
        start_new_session=True,
        cwd=directory,
    )
    return Process(name, popen, log)


def _wait(process: Process, ready: Any, what: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        process.check()
        with contextlib.suppress(httpx.HTTPError, OSError):
            if ready():
                return
        time.sleep(0.1)
    raise AssertionError(f"{what} was not ready within {timeout} s: {process.log.read_text()[-3000:]}")


def _accepts(port: int) -> bool:
    with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=1):
        return True
    return False


# -- the admin's client --


def resource_path(resource: str, namespace: str | None, name: str | None = None) -> str:
    """The REST path of ``resource`` (``v1/pods``, ``apps/v1/deployments``, …)."""
    prefix = f"/api/{resource.rsplit('/', 1)[0]}" if resource.count("/") == 1 else "/apis/"
    if resource.count("/") == 2:
        prefix += resource.rsplit("/", 1)[0]
    plural = resource.rsplit("/", 1)[1]
    path = prefix + (f"/namespaces/{namespace}" if namespace else "") + f"/{plural}"
    return path + (f"/{name}" if name else "")


class Admin:
    """The cluster's administrator (``system:masters``), over HTTPS, for seeding and reading."""

    def __init__(self, url: str, pki: Pki) -> None:
        self.url = url
        context = ssl.create_default_context(cafile=str(pki.ca))
        context.load_cert_chain(str(pki.admin_cert), str(pki.admin_key))
        self.client = httpx.Client(base_url=url, verify=context, timeout=30)

    def request(
        self, method: str, path: str, body: object = None, *, merge: bool = False, ok: Sequence[int] = ()
    ) -> dict[str, Any]:
        headers = {"content-type": "application/merge-patch+json"} if merge else {}
        answer = self.client.request(
            method, path, content=None if body is None else json.dumps(body), headers=headers
        )
        if answer.status_code >= 400 and answer.status_code not in ok:
            raise AssertionError(f"{method} {path}: {answer.status_code} {answer.text[:500]}")
        return dict(answer.json()) if answer.content else {}

    def create(self, resource: str, obj: Mapping[str, Any]) -> dict[str, Any]:
        namespace = obj["metadata"].get("namespace")
        return self.request("POST", resource_path(resource, namespace), obj)

    def apply(self, obj: Mapping[str, Any]) -> None:
        """Create ``obj`` (a manifest with apiVersion and kind) unless it exists."""
        api, kind = obj["apiVersion"], obj["kind"]
        plural = {
            "Namespace": "namespaces",
            "ServiceAccount": "serviceaccounts",
            "ClusterRole": "clusterroles",
            "ClusterRoleBinding": "clusterrolebindings",
            "Role": "roles",
            "RoleBinding": "rolebindings",
            "CustomResourceDefinition": "customresourcedefinitions",
            "ValidatingAdmissionPolicy": "validatingadmissionpolicies",
            "MutatingWebhookConfiguration": "mutatingwebhookconfigurations",
            "ValidatingWebhookConfiguration": "validatingwebhookconfigurations",
            "ValidatingAdmissionPolicyBinding": "validatingadmissionpolicybindings",
        }[kind]
        namespace = obj["metadata"].get("namespace")
        self.request("POST", resource_path(f"{api}/{plural}", namespace), obj, ok=(409,))

    def list(self, resource: str, namespace: str | None = None) -> list[dict[str, Any]]:
        return list(self.request("GET", resource_path(resource, namespace)).get("items") or [])

    def get(self, resource: str, namespace: str | None, name: str) -> dict[str, Any] | None:
        found = self.request("GET", resource_path(resource, namespace, name), ok=(404,))
        return None if found.get("kind") == "Status" else found

    def token(self, namespace: str, account: str, seconds: int = 3600) -> str:
        """A token for a service account, from the TokenRequest API."""
        answer = self.request(
            "POST",
            f"/api/v1/namespaces/{namespace}/serviceaccounts/{account}/token",
            {
                "apiVersion": "authentication.k8s.io/v1",
                "kind": "TokenRequest",
                "spec": {"expirationSeconds": seconds},
            },
        )
        return str(answer["status"]["token"])

    def close(self) -> None:
        self.client.close()


@dataclass
class ApiServer:
    """One cluster: a kube-apiserver on 127.0.0.1 over the shared etcd."""

    name: str
    url: str
    process: Process
    admin: Admin
    pki: Pki
    started_in: float
    """Seconds from starting kube-apiserver to its /readyz answering ok."""
    controllers: Controllers | None = None
    """Its controller manager, scheduler and kwok, when the control plane was started with them."""
    chaos_mesh: ChaosMesh | None = None
    """Chaos Mesh's controller-manager and the chaos-daemon stand-in (`kube_chaos_mesh`), when the
    control plane was started with them: they serve its chaos kinds' webhooks then."""
    chaos_mesh_installed_in: float = 0.0
    """With `chaos_mesh`: seconds to install Chaos Mesh's CRDs until they serve, before its start."""

    def write_admin_kubeconfig(self, path: Path) -> Path:
        """A kubeconfig of one context, the cluster's name, for its administrator."""
        cluster, user, context = self.kubeconfig_entry(
            {"client-certificate": str(self.pki.admin_cert), "client-key": str(self.pki.admin_key)}
        )
        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [cluster],
            "users": [user],
            "contexts": [context],
            "current-context": self.name,
        }
        path.write_text(yaml.safe_dump(config), encoding="utf-8")
        return path

    def kubeconfig_entry(self, user: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
        cluster = {
            "name": self.name,
            "cluster": {"server": self.url, "certificate-authority": str(self.pki.ca)},
        }
        context = {"name": self.name, "context": {"cluster": self.name, "user": f"{self.name}-user"}}
        return cluster, {"name": f"{self.name}-user", "user": user}, context


CHAOS_KINDS = ("networkchaos", "httpchaos", "dnschaos", "podchaos")
"""The chaos kinds whose admission webhooks `chaosmesh-webhook` serves (those bascule creates)."""


def _webhooks(url: str, ca: Path, action: str) -> list[dict[str, Any]]:
    return [
        {
            "name": f"{action[0]}{plural}.chaos-mesh.org",
            "clientConfig": {
                "url": f"{url}/{action}-{plural}",
                "caBundle": base64.b64encode(ca.read_bytes()).decode(),
            },
            "rules": [
                {
                    "apiGroups": ["chaos-mesh.org"],
                    "apiVersions": ["v1alpha1"],
                    "operations": ["CREATE", "UPDATE"],
                    "resources": [plural],
                }
            ],
            "sideEffects": "None",
            "admissionReviewVersions": ["v1"],
            "failurePolicy": "Fail",
            "timeoutSeconds": 10,
        }
        for plural in CHAOS_KINDS
    ]


PARTITION_BEHAVIOR = {
    "description": "PartitionBehavior defines how matched packets are handled for the partition action.",
    "type": "string",
    "enum": ["drop", "reject"],
    "default": "drop",
}
"""``NetworkChaosSpec.partitionBehavior`` as the webhook's ``chaos-mesh/api`` (2026-09-06) declares it
(``+kubebuilder:validation:Enum=drop;reject``, ``+kubebuilder:default=drop``)."""


def _with_partition_behavior(crd: dict[str, Any]) -> dict[str, Any]:
    """The NetworkChaos CRD with the field the webhook's API module adds. The Go proxy serves Chaos
    Mesh's CRDs only from its module of 2026-09-02, which lacks ``partitionBehavior``; the webhook,
    built from ``chaos-mesh/api`` of 2026-09-06, defaults it to ``drop``. Without it in the schema
    the field was pruned at create, so on every update — even of metadata only, such as the
    finalizer Chaos Mesh's controller adds — the webhook saw the spec change and refused ("Cannot
    update chaos spec"). A real installation ships CRDs and webhook of one release."""
    if crd.get("spec", {}).get("names", {}).get("kind") != "NetworkChaos":
        return crd
    for version in crd["spec"]["versions"]:
        spec = version["schema"]["openAPIV3Schema"]["properties"]["spec"]
        spec["properties"].setdefault("partitionBehavior", dict(PARTITION_BEHAVIOR))
    return crd


@dataclass
class ControlPlane:
    """etcd, Chaos Mesh's admission webhooks and one kube-apiserver per cluster name."""

    etcd: Process
    webhook: Process
    webhook_url: str
    servers: dict[str, ApiServer]
    crds: Path
    etcd_started_in: float

    def install_chaos_mesh(self, server: ApiServer) -> float:
        """Chaos Mesh's CRDs (the pinned module's manifests/crd.yaml) until each is Established,
        and its mutating and validating webhooks (served by `chaosmesh-webhook`, as its
        controller-manager registers them; where the real controller-manager runs, it serves and
        registers its own); the seconds it took."""
        began = time.monotonic()
        for kind, action in (
            ("MutatingWebhookConfiguration", "mutate"),
            ("ValidatingWebhookConfiguration", "validate"),
        ):
            if server.chaos_mesh is not None:
                break
            server.admin.apply(
                {
                    "apiVersion": "admissionregistration.k8s.io/v1",
                    "kind": kind,
                    "metadata": {"name": f"chaos-mesh-{action}"},
                    "webhooks": _webhooks(self.webhook_url, server.pki.ca, action),
                }
            )
        documents = [d for d in yaml.safe_load_all(self.crds.read_text(encoding="utf-8")) if d]
        for crd in documents:
            server.admin.apply(_with_partition_behavior(crd))
        path = "/apis/apiextensions.k8s.io/v1/customresourcedefinitions"
        deadline = time.monotonic() + 60
        names = {d["metadata"]["name"] for d in documents}
        while time.monotonic() < deadline:
            established = {
                c["metadata"]["name"]
                for c in server.admin.request("GET", path).get("items") or []
                if any(
                    x["type"] == "Established" and x["status"] == "True"
                    for x in (c.get("status") or {}).get("conditions") or []
                )
            }
            # Discovery and storage lag the Established condition by a moment (404, then 429
            # "storage is (re)initializing").
            if names <= established and all(
                server.admin.client.get(f"/apis/chaos-mesh.org/v1alpha1/{plural}").status_code == 200
                for plural in CHAOS_KINDS
            ):
                return time.monotonic() - began
            time.sleep(0.2)
        raise AssertionError(f"{server.name}: Chaos Mesh's CRDs were not established within 60 s")

    def stop(self) -> None:
        for server in self.servers.values():
            if server.chaos_mesh is not None:
                server.chaos_mesh.stop()
            if server.controllers is not None:
                server.controllers.stop()
            server.admin.close()
            server.process.stop()
        self.webhook.stop()
        self.etcd.stop()


def _start_apiserver(name: str, binaries: Path, etcd_url: str, pki: Pki, directory: Path) -> ApiServer:
    port = free_port()
    own = directory / name
    own.mkdir(parents=True, exist_ok=True)
    began = time.monotonic()
    process = _start(
        "kube-apiserver",
        [
            str(binaries / "kube-apiserver"),
            f"--etcd-servers={etcd_url}",
            f"--etcd-prefix=/registry-{name}",
            "--bind-address=127.0.0.1",
            f"--secure-port={port}",
            "--advertise-address=127.0.0.1",
            "--endpoint-reconciler-type=none",
            f"--cert-dir={own}",
            f"--tls-cert-file={pki.server_cert}",
            f"--tls-private-key-file={pki.server_key}",
            f"--client-ca-file={pki.ca}",
            "--service-account-issuer=https://kubernetes.default.svc",
            f"--service-account-key-file={pki.sa_pub}",
            f"--service-account-signing-key-file={pki.sa_key}",
            "--service-cluster-ip-range=10.96.0.0/16",
            "--authorization-mode=RBAC",
            "--profiling=false",
        ],
        own,
    )
    url = f"https://127.0.0.1:{port}"
    admin = Admin(url, pki)

    def ready() -> bool:
        return admin.client.get("/readyz").status_code == 200

    try:
        _wait(process, ready, f"kube-apiserver {name}", 120)
    except BaseException:
        admin.close()
        process.stop()
        raise
    return ApiServer(name, url, process, admin, pki, time.monotonic() - began)


# -- controllers, scheduler and kwok --

CONTROLLERS = (
    "deployment-controller",
    "replicaset-controller",
    "disruption-controller",
    "horizontal-pod-autoscaler-controller",
    "namespace-controller",
    "garbage-collector-controller",
    "serviceaccount-controller",
    "serviceaccount-token-controller",
    "node-lifecycle-controller",
    "pod-garbage-collector-controller",
    "statefulset-controller",
    "persistentvolume-binder-controller",
    "persistentvolumeclaim-protection-controller",
    "persistentvolume-protection-controller",
)
"""What kube-controller-manager runs (``--controllers``): workloads and their pods, budgets, HPAs
(with no metrics API: they hold a workload within their bounds, never scale on load), namespaces,
owners, service accounts, and the nodes' taints (node-lifecycle: ``node.kubernetes.io/not-ready``
lifted once kwok reports a node Ready, ``node.kubernetes.io/unschedulable`` while it is cordoned);
StatefulSets and their volume claims: the PV binder binds claims to the static PersistentVolumes a
test creates (no provisioner runs: nothing makes a volume on demand), and the protection controllers
lift the ``kubernetes.io/pvc-protection`` finalizer of a claim once no pod uses it (``pv-protection``
of a volume once no claim is bound to it). Not run: endpoints, jobs, the taint-based evictor, the
attach/detach controller (no kubelet mounts anything)."""

KWOK_NODE = {"kwok.x-k8s.io/node": "fake"}
"""The annotation of the nodes kwok's controller manages (``--manage-nodes-with-annotation-selector``):
nodes without it (those of the tests with no controllers) are left alone."""


@dataclass
class Controllers:
    """kube-controller-manager, kube-scheduler and kwok's controller for one API server."""

    controller_manager: Process
    scheduler: Process
    kwok: Process
    started_in: float
    """Seconds from starting them to the three answering ready (the scheduler's informers synced)."""

    def check(self) -> None:
        for process in (self.controller_manager, self.scheduler, self.kwok):
            process.check()

    def stop(self) -> None:
        for process in (self.kwok, self.scheduler, self.controller_manager):
            process.stop()


def _https_ok(port: int, path: str) -> bool:
    # Their serving certificates are self-signed on start: only whether they answer 200 matters.
    return httpx.get(f"https://127.0.0.1:{port}{path}", verify=False, timeout=2).status_code == 200


def _start_controllers(server: ApiServer, binaries: Path, directory: Path) -> Controllers:
    own = directory / server.name
    kubeconfig = server.write_admin_kubeconfig(own / "admin.kubeconfig")
    served = ["--bind-address=127.0.0.1", f"--kubeconfig={kubeconfig}"]
    delegated = [f"--authentication-kubeconfig={kubeconfig}", f"--authorization-kubeconfig={kubeconfig}"]
    began = time.monotonic()
    manager_port, scheduler_port, kwok_port = free_port(), free_port(), free_port()
    manager = _start(
        "kube-controller-manager",
        [
            str(binaries / "kube-controller-manager"),
            *served,
            *delegated,
            f"--secure-port={manager_port}",
            f"--cert-dir={own / 'kcm'}",
            "--leader-elect=false",
            f"--controllers={','.join(CONTROLLERS)}",
            f"--service-account-private-key-file={server.pki.sa_key}",
            f"--root-ca-file={server.pki.ca}",
            "--use-service-account-credentials=false",
            "--horizontal-pod-autoscaler-sync-period=1s",
            "--node-monitor-period=1s",
            "--profiling=false",
        ],
        own,
    )
    scheduler = _start(
        "kube-scheduler",
        [
            str(binaries / "kube-scheduler"),
            *served,
            *delegated,
            f"--secure-port={scheduler_port}",
            f"--cert-dir={own / 'scheduler'}",
            "--leader-elect=false",
            "--profiling=false",
        ],
        own,
    )
    config = own / "kwok.yaml"
    shutil.copyfile(binaries / "kwok-stages.yaml", config)
    kwok = _start(
        "kwok",
        [
            str(binaries / "kwok"),
            f"--config={config}",
            f"--kubeconfig={kubeconfig}",
            f"--server-address=127.0.0.1:{kwok_port}",
            "--manage-nodes-with-annotation-selector=" + ",".join(f"{k}={v}" for k, v in KWOK_NODE.items()),
            "--node-ip=127.0.0.1",
            "--cidr=10.244.0.0/16",
            "--node-lease-duration-seconds=40",
        ],
        own,
    )
    found = Controllers(manager, scheduler, kwok, 0.0)
    try:
        _wait(
            manager, lambda: _https_ok(manager_port, "/healthz"), f"kube-controller-manager {server.name}", 60
        )
        _wait(scheduler, lambda: _https_ok(scheduler_port, "/readyz"), f"kube-scheduler {server.name}", 60)
        _wait(
            kwok,
            lambda: httpx.get(f"http://127.0.0.1:{kwok_port}/healthz", timeout=2).status_code == 200,
            f"kwok {server.name}",
            60,
        )
    except BaseException:
        found.stop()
        raise
    found.started_in = time.monotonic() - began
    return found


@contextlib.contextmanager
def running_control_plane(
    directory: Path, names: Sequence[str], *, controllers: bool = False, chaos_mesh: bool = False
) -> Iterator[ControlPlane]:
    """etcd, Chaos Mesh's webhooks and a kube-apiserver per name, on 127.0.0.1 — with
    ``controllers``, each with its `Controllers` too; with ``chaos_mesh``, each with Chaos Mesh's
    CRDs installed and its real controller-manager and a chaos-daemon stand-in running
    (`kube_chaos_mesh`); every process stopped on exit."""
    from kube_chaos_mesh import CHAOS_MESH_FILES, start_chaos_mesh

    binaries = require_control_plane()
    wanted = (CONTROLLER_FILES if controllers else ()) + (CHAOS_MESH_FILES if chaos_mesh else ())
    missing = [f for f in wanted if not (binaries / f).is_file()]
    assert not missing, f"scripts/build-control-plane has not built {missing} in {binaries}"
    pki = make_pki(directory / "pki")
    client, peer = free_port(), free_port()
    began = time.monotonic()
    etcd = _start(
        "etcd",
        [
            str(binaries / "etcd"),
            "--name=bascule-test",
            f"--data-dir={directory / 'etcd-data'}",
            f"--listen-client-urls=http://127.0.0.1:{client}",
            f"--advertise-client-urls=http://127.0.0.1:{client}",
            f"--listen-peer-urls=http://127.0.0.1:{peer}",
            f"--initial-advertise-peer-urls=http://127.0.0.1:{peer}",
            f"--initial-cluster=bascule-test=http://127.0.0.1:{peer}",
            "--unsafe-no-fsync",
            "--log-level=warn",
        ],
        directory,
    )
    etcd_url = f"http://127.0.0.1:{client}"
    port = free_port()
    webhook = _start(
        "chaosmesh-webhook",
        [
            str(binaries / "chaosmesh-webhook"),
            f"-listen=127.0.0.1:{port}",
            f"-cert={pki.server_cert}",
            f"-key={pki.server_key}",
        ],
        directory,
    )
    crds = binaries / "chaos-mesh-crd.yaml"
    plane = ControlPlane(etcd, webhook, f"https://127.0.0.1:{port}", {}, crds, 0.0)
    try:
        _wait(
            etcd,
            lambda: httpx.get(f"{etcd_url}/health", timeout=2).json().get("health") == "true",
            "etcd",
            60,
        )
        plane.etcd_started_in = time.monotonic() - began
        _wait(webhook, lambda: _accepts(port), "chaosmesh-webhook", 30)
        for name in names:
            server = plane.servers[name] = _start_apiserver(name, binaries, etcd_url, pki, directory)
            if controllers:
                server.controllers = _start_controllers(server, binaries, directory)
            if chaos_mesh:
                # Its CRDs first: the controller-manager watches every chaos kind from its start.
                server.chaos_mesh_installed_in = plane.install_chaos_mesh(server)
                server.chaos_mesh = start_chaos_mesh(server, binaries, directory / name)
        yield plane
    finally:
        plane.stop()
