"""A real CoreDNS (``scripts/build-control-plane``: v1.15.0 with the plugins a cluster's ``coredns``
ConfigMap uses) serving one test cluster's Services from its ``kubernetes`` plugin, on a free port,
its Corefile read from that cluster's ``kube-system/coredns`` ConfigMap.

In a cluster the kubelet projects the ConfigMap into CoreDNS's pod as a file and CoreDNS's
``reload`` plugin rereads it; there is no kubelet here, so `CoreDns.sync` does the kubelet's part
(the ConfigMap's ``Corefile`` written to the file CoreDNS was started with) and ``reload`` does the
rest, as in a cluster.

The Corefile (`corefile`) is a cluster's default one but for what a loopback test needs: no port on
the ``.`` block (CoreDNS serves it, and every block bascule appends, on ``-dns.port``, as a cluster's
CoreDNS does on 53), ``health`` and ``ready`` on free loopback ports, the API server reached through
a kubeconfig (a pod uses its service account instead), ``reload 2s`` (its minimum; 30 s by
default), and no ``forward``: nothing is sent beyond 127.0.0.1.

With ``multicluster`` the Corefile is an MCS-enabled cluster's: the ``kubernetes`` plugin is also
authoritative for ``clusterset.local`` and told ``multicluster clusterset.local`` (CoreDNS's own
Multi-Cluster Services support, in its ``kubernetes`` plugin since v1.12.2, coredns/coredns#7266;
the separate ``github.com/coredns/multicluster`` plugin's last commit, of 2025-03, requires v1.11.4),
so it answers
``<service>.<namespace>.svc.clusterset.local`` from the ServiceImports in the cluster
(``sigs.k8s.io/mcs-api``'s CRDs, `install_mcs_api`; the objects an MCS implementation writes into
each importing cluster, `import_service`).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import dns.message
import dns.query
import dns.rcode
import dns.rdatatype
import httpx
import pytest
import yaml
from control_plane import BINARIES, REQUIRED, ApiServer, Process, _start, _wait, free_port, resource_path

COREDNS = None if BINARIES is None else BINARIES / "coredns"
NEEDS_COREDNS = pytest.mark.skipif(
    (COREDNS is None or not COREDNS.is_file()) and not REQUIRED,
    reason="CoreDNS is not built: run scripts/build-control-plane once",
)
"""For the tests that run a real CoreDNS (beside the control plane)."""

MCS_CRDS = None if BINARIES is None else BINARIES / "mcs-api-crd.yaml"
NEEDS_MCS_API = pytest.mark.skipif(
    (MCS_CRDS is None or not MCS_CRDS.is_file()) and not REQUIRED,
    reason="the Multi-Cluster Services CRDs are not in the control plane's cache: run "
    "scripts/build-control-plane once",
)
"""For the tests that install the Multi-Cluster Services API (copied beside the binaries)."""

SERVICE_IMPORTS = "multicluster.x-k8s.io/v1alpha1/serviceimports"
"""The version CoreDNS v1.15.0 reads (mcs-api v0.5.2 serves it beside v1beta1, the same schema)."""


def corefile(kubeconfig: Path, context: str, health: int, ready: int, *, multicluster: bool = False) -> str:
    """A cluster's default Corefile, made to run on loopback (see the module's docstring); with
    `multicluster`, an MCS-enabled cluster's."""
    zones = "cluster.local clusterset.local" if multicluster else "cluster.local"
    option = "\n       multicluster clusterset.local" if multicluster else ""
    return f""". {{
    errors
    health 127.0.0.1:{health}
    ready 127.0.0.1:{ready}
    kubernetes {zones} in-addr.arpa ip6.arpa {{
       kubeconfig {kubeconfig} {context}{option}
       pods insecure
       fallthrough in-addr.arpa ip6.arpa
       ttl 30
    }}
    cache 30
    loop
    reload 2s
    loadbalance
}}
"""


@dataclass(frozen=True)
class Answer:
    rcode: str
    addresses: tuple[str, ...]


@dataclass
class CoreDns:
    """CoreDNS on 127.0.0.1:`port` for the cluster of `server`."""

    process: Process
    server: ApiServer
    port: int
    file: Path
    started_in: float
    """Seconds from starting CoreDNS to its ``ready`` plugin answering 200 (the API synced)."""

    def sync(self) -> bool:
        """What the kubelet does: the ConfigMap's Corefile written to CoreDNS's file when it
        changed (True then)."""
        found = self.server.admin.get("v1/configmaps", "kube-system", "coredns")
        assert found is not None, "no kube-system/coredns ConfigMap"
        text = str(found["data"]["Corefile"])
        if self.file.read_text(encoding="utf-8") == text:
            return False
        self.file.write_text(text, encoding="utf-8")
        return True

    def resolve(self, name: str) -> Answer:
        """An A query for `name`, over UDP."""
        self.process.check()
        answer = dns.query.udp(dns.message.make_query(name, "A"), "127.0.0.1", port=self.port, timeout=2)
        addresses = tuple(
            sorted(r.to_text() for rrset in answer.answer if rrset.rdtype == dns.rdatatype.A for r in rrset)
        )
        return Answer(dns.rcode.to_text(answer.rcode()), addresses)


def _admin_kubeconfig(path: Path, server: ApiServer) -> Path:
    cluster, user, context = server.kubeconfig_entry(
        {"client-certificate": str(server.pki.admin_cert), "client-key": str(server.pki.admin_key)}
    )
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [cluster],
        "users": [user],
        "contexts": [context],
        "current-context": server.name,
    }
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    return path


def install_mcs_api(server: ApiServer) -> float:
    """The Multi-Cluster Services CRDs (ServiceImport, ServiceExport) until ServiceImports are
    served; the seconds it took."""
    assert MCS_CRDS is not None and MCS_CRDS.is_file(), (
        "scripts/build-control-plane has not copied the MCS CRDs"
    )
    began = time.monotonic()
    documents = [d for d in yaml.safe_load_all(MCS_CRDS.read_text(encoding="utf-8")) if d]
    for crd in documents:
        server.admin.apply(crd)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        # Discovery and storage lag the CRD's Established condition by a moment (404, then 429).
        if server.admin.client.get(resource_path(SERVICE_IMPORTS, None)).status_code == 200:
            return time.monotonic() - began
        time.sleep(0.2)
    raise AssertionError(f"{server.name}: ServiceImports not served within 60 s")


def import_service(server: ApiServer, namespace: str, name: str, ips: list[str], port: int) -> None:
    """What an MCS implementation writes into an importing cluster for a Service exported from
    another: a ServiceImport of the same name and namespace (namespace sameness), ``type:
    ClusterSetIP``, its ``ips`` and port. Left in place if it exists (tests share the cluster)."""
    body = {
        "apiVersion": "multicluster.x-k8s.io/v1alpha1",
        "kind": "ServiceImport",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"type": "ClusterSetIP", "ips": ips, "ports": [{"port": port, "protocol": "TCP"}]},
    }
    server.admin.request("POST", resource_path(SERVICE_IMPORTS, namespace), body, ok=(409,))


@contextlib.contextmanager
def running_coredns(directory: Path, server: ApiServer, *, multicluster: bool = False) -> Iterator[CoreDns]:
    """CoreDNS for `server`'s cluster, its ConfigMap's Corefile replaced by `corefile` (the
    cluster's administrator writes it, as a distribution installs it); stopped on exit. With
    `multicluster` the cluster must have the MCS CRDs (`install_mcs_api`)."""
    assert COREDNS is not None and COREDNS.is_file(), "scripts/build-control-plane has not built CoreDNS"
    own = directory / f"coredns-{server.name}"
    own.mkdir(parents=True, exist_ok=True)
    kubeconfig = _admin_kubeconfig(own / "kubeconfig", server)
    port, health, ready = free_port(), free_port(), free_port()
    text = corefile(kubeconfig, server.name, health, ready, multicluster=multicluster)
    path = "/api/v1/namespaces/kube-system/configmaps/coredns"
    server.admin.request("PATCH", path, {"data": {"Corefile": text}}, merge=True)
    file = own / "Corefile"
    file.write_text(text, encoding="utf-8")
    began = time.monotonic()
    process = _start("coredns", [str(COREDNS), "-conf", str(file), "-dns.port", str(port)], own)
    try:
        _wait(
            process,
            lambda: httpx.get(f"http://127.0.0.1:{ready}/ready", timeout=2).status_code == 200,
            f"CoreDNS for {server.name}",
            60,
        )
        yield CoreDns(process, server, port, file, time.monotonic() - began)
    finally:
        process.stop()
