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
from control_plane import BINARIES, REQUIRED, ApiServer, Process, _start, _wait, free_port

COREDNS = None if BINARIES is None else BINARIES / "coredns"
NEEDS_COREDNS = pytest.mark.skipif(
    (COREDNS is None or not COREDNS.is_file()) and not REQUIRED,
    reason="CoreDNS is not built: run scripts/build-control-plane once",
)
"""For the tests that run a real CoreDNS (beside the control plane)."""


def corefile(kubeconfig: Path, context: str, health: int, ready: int) -> str:
    """A cluster's default Corefile, made to run on loopback (see the module's docstring)."""
    return f""". {{
    errors
    health 127.0.0.1:{health}
    ready 127.0.0.1:{ready}
    kubernetes cluster.local in-addr.arpa ip6.arpa {{
       kubeconfig {kubeconfig} {context}
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


@contextlib.contextmanager
def running_coredns(directory: Path, server: ApiServer) -> Iterator[CoreDns]:
    """CoreDNS for `server`'s cluster, its ConfigMap's Corefile replaced by `corefile` (the
    cluster's administrator writes it, as a distribution installs it); stopped on exit."""
    assert COREDNS is not None and COREDNS.is_file(), "scripts/build-control-plane has not built CoreDNS"
    own = directory / f"coredns-{server.name}"
    own.mkdir(parents=True, exist_ok=True)
    kubeconfig = _admin_kubeconfig(own / "kubeconfig", server)
    port, health, ready = free_port(), free_port(), free_port()
    text = corefile(kubeconfig, server.name, health, ready)
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
