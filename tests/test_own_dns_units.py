"""Names for own services, without starting a stack: the ``dns_`` placeholders, which routes and
replicas they concern, the ``dns`` fault's effects on them, the resolver files and namespace
wrapper (`targets.local.names`), the DNS server's per-replica listeners and its lookup observer,
and the refusal where this machine cannot give a replica a resolver of its own."""

from __future__ import annotations

import itertools
import os
import socket
import subprocess
import textwrap
from pathlib import Path

import pytest
from dnslib import DNSRecord
from typer.testing import CliRunner

from bascule.cli import app
from bascule.faults import Dns, DnsAnswer
from bascule.model.loading import parse_design
from bascule.model.placeholders import named_callees
from bascule.model.selector import Selector
from bascule.plan.resolve import resolve
from bascule.stack.layout import layout, own_command
from bascule.targets.base import Refusal, StartRequest
from bascule.targets.local import names
from bascule.targets.local.dns import DnsServer, Lookup
from bascule.targets.local.effects import DnsFault, ResetConnections, compute_effects
from bascule.targets.local.faultstate import DnsFaultMode
from bascule.targets.local.names import (
    ResolverFiles,
    listen_for,
    names_refusal,
    namespace_argv,
    nsswitch_text,
    resolv_conf_text,
)
from bascule.targets.local.package import LocalOptions, LocalStarter
from bascule.targets.local.target import refusal

PAR = "scaleway/fr-par"
GRA = "ovhcloud/gra"
KV_PAR = "kv.scaleway-fr-par.bascule.internal"


def design_text(env: str, *, other_env: str = '{KV: "{kv.url}"}') -> str:
    return textwrap.dedent(
        f"""\
        id: named
        regions: [{{id: {PAR}}}, {{id: {GRA}}}]
        routing: {{order: [{PAR}, {GRA}]}}
        components:
          api:
            entry: true
            calls: [kv]
            command: {{argv: ["{{python}}", api.py, --port, "{{port}}"], env: {env}}}
            replicas: {{{PAR}: 1}}
          batch:
            calls: [kv]
            command: {{argv: ["{{python}}", batch.py, --port, "{{port}}"], env: {other_env}}}
            replicas: {{{PAR}: 1}}
          kv:
            command: {{argv: ["{{python}}", kv.py, --port, "{{port}}"]}}
            replicas: {{{PAR}: 1, {GRA}: 1}}
        replication: {{mode: none}}
        """
    )


NAMED = (
    '{KV: "{kv.dns_url}", KV_HOST: "{kv.dns_host}", KV_PORT: "{kv.port}", GRA: "{kv@ovhcloud/gra.dns_url}"}'
)


def test_dns_placeholders_give_the_route_by_its_name_and_url_stays_the_address() -> None:
    design = parse_design(design_text(NAMED), "d.yaml")
    stack = layout(design)
    ports = {r.name: 41000 + i for i, r in enumerate(stack.routes)}
    api = next(r for r in stack.replicas if r.component == "api")
    command = own_command(design, stack, api, port=40000, route_ports=ports, base_dir=".", data_dir="/d")
    par = ports["api@scaleway-fr-par->kv@scaleway-fr-par"]
    gra = ports["api@scaleway-fr-par->kv@ovhcloud-gra"]
    assert command.env == {
        "KV": f"http://{KV_PAR}:{par}",
        "KV_HOST": KV_PAR,
        "KV_PORT": str(par),
        "GRA": f"http://kv.ovhcloud-gra.bascule.internal:{gra}",
    }
    batch = next(r for r in stack.replicas if r.component == "batch")
    other = own_command(design, stack, batch, port=40001, route_ports=ports, base_dir=".", data_dir="/d")
    assert other.env == {"KV": f"http://127.0.0.1:{ports['batch@scaleway-fr-par->kv@scaleway-fr-par']}"}


def test_the_layout_knows_which_routes_are_named_and_which_services_resolve() -> None:
    stack = layout(parse_design(design_text(NAMED), "d.yaml"))
    assert stack.resolving == frozenset({"api"})
    assert stack.named_routes == frozenset(
        {"api@scaleway-fr-par->kv@scaleway-fr-par", "api@scaleway-fr-par->kv@ovhcloud-gra"}
    )
    assert named_callees(["{kv.url}", "x{kv.dns_host}", "{kv@aws/us-east-1.dns_url}", "{{kv.dns_url}}"]) == {
        "kv",
        "kv@aws/us-east-1",
    }
    plain = layout(parse_design(design_text('{KV: "{kv.url}"}'), "d.yaml"))
    assert plain.resolving == frozenset() and plain.named_routes == frozenset()


@pytest.mark.parametrize("only_new", [True, False])
def test_a_dns_fault_reaches_an_own_service_whose_callers_were_given_its_name(only_new: bool) -> None:
    design = parse_design(design_text(NAMED), "d.yaml")
    fault = Dns(answer=DnsAnswer.NODATA, new_connections_only=only_new)
    touch, problems = resolve(design, fault, Selector(component="kv", region=PAR), ())
    assert not problems
    effects = compute_effects(fault, touch, layout(design))
    resets = (
        []
        if only_new
        else [
            ResetConnections("api@scaleway-fr-par->kv@scaleway-fr-par"),
            ResetConnections("batch@scaleway-fr-par->kv@scaleway-fr-par"),
        ]
    )
    assert effects == (DnsFault(KV_PAR, DnsFaultMode.NODATA), *resets)


def test_a_dns_fault_is_refused_where_no_caller_has_the_name() -> None:
    design = parse_design(design_text('{KV: "{kv.url}"}'), "d.yaml")
    fault = Dns(answer=DnsAnswer.NXDOMAIN)
    touch, _ = resolve(design, fault, Selector(component="kv", region=PAR), ())
    reason = refusal(fault, touch, layout(design))
    assert reason is not None and "no caller of kv@scaleway/fr-par is given its name" in reason
    assert "{NAME.dns_url}" in reason


def test_resolver_files_and_the_namespace_wrapper() -> None:
    assert resolv_conf_text("127.80.1.2", "api-scaleway-fr-par-0").splitlines()[1:] == [
        "nameserver 127.80.1.2"
    ]
    original = "passwd: files\nhosts:          files mdns4_minimal [NOTFOUND=return] dns\nnetworks: files\n"
    assert nsswitch_text(original) == "passwd: files\nhosts:          files dns\nnetworks: files\n"
    assert nsswitch_text("passwd: files\n") == "passwd: files\nhosts:          files dns\n"
    files = ResolverFiles("127.80.1.2", Path("/run/r.conf"), Path("/run/n.conf"))
    argv = namespace_argv(("curl", "-s", "http://x"), files)
    assert argv[:7] == ("unshare", "--mount", "--propagation", "private", "--", "/bin/sh", "-c")
    assert argv[8:] == ("/run/r.conf", "/run/n.conf", "curl", "-s", "http://x")
    assert 'exec "$@"' in argv[7] and "/etc/resolv.conf" in argv[7] and "/etc/nsswitch.conf" in argv[7]
    bare = namespace_argv(("curl",), ResolverFiles("127.80.1.2", Path("/run/r.conf"), None))
    assert bare[8:] == ("/run/r.conf", "curl") and "nsswitch" not in bare[7]


class _Busy:
    """Refuses the first `busy` addresses it is asked to listen on, as another run holding them."""

    def __init__(self, busy: int) -> None:
        self.busy = busy
        self.asked: list[tuple[str, int, str]] = []

    def listen(self, address: str, port: int, *, asker: str) -> None:
        self.asked.append((address, port, asker))
        if len(self.asked) <= self.busy:
            raise OSError(98, "Address already in use")


def test_listen_for_tries_other_loopback_addresses_until_one_is_free() -> None:
    dns = _Busy(3)
    address = listen_for(dns, "api-scaleway-fr-par-0")
    assert len(dns.asked) == 4 and dns.asked[-1] == (address, 53, "api-scaleway-fr-par-0")
    for asked, port, _ in dns.asked:
        first, second, *_ = (int(p) for p in asked.split("."))
        assert first == 127 and second >= 64 and port == 53
    with pytest.raises(OSError, match="no free loopback address"):
        listen_for(_Busy(10_000), "api-scaleway-fr-par-0")


def _ask(address: tuple[str, int], name: str, qtype: str = "A") -> DNSRecord:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(3)
        sock.sendto(DNSRecord.question(name, qtype).pack(), address)
        return DNSRecord.parse(sock.recv(4096))


def test_the_server_tells_each_lookup_and_which_replica_asked() -> None:
    seen: list[Lookup] = []

    def observe(lookup: Lookup) -> None:
        seen.append(lookup)
        if lookup.name.startswith("boom."):
            raise RuntimeError("an observer's bug")

    dns = DnsServer(on_lookup=observe)
    dns.listen("127.91.0.7", 0, asker="api-scaleway-fr-par-0")  # before start
    port = dns.start()
    try:
        dns.listen("127.91.0.8", 0, asker="batch-scaleway-fr-par-0")  # and after
        dns.set_record("kv.scaleway-fr-par", ["127.0.0.1"])
        own = dns.listening()
        assert set(own) == {"api-scaleway-fr-par-0", "batch-scaleway-fr-par-0"}
        assert _ask(own["api-scaleway-fr-par-0"], KV_PAR).rr[0].rdata.toZone() == "127.0.0.1"
        assert not _ask(own["batch-scaleway-fr-par-0"], KV_PAR, "AAAA").rr
        assert _ask(("127.0.0.1", port), "example.com").header.rcode == 5  # REFUSED
        assert _ask(("127.0.0.1", port), "boom.bascule.internal").header.rcode == 3  # answered anyway
        # TCP too, on a replica's own listener.
        address = own["api-scaleway-fr-par-0"]
        query = DNSRecord.question(KV_PAR, "A").pack()
        with socket.create_connection(address, timeout=3) as tcp:
            tcp.sendall(len(query).to_bytes(2, "big") + query)
            size = int.from_bytes(tcp.recv(2), "big")
            assert DNSRecord.parse(tcp.recv(size)).rr
    finally:
        dns.stop()
    assert [(lk.name, lk.qtype, lk.asker, lk.outcome) for lk in seen] == [
        (KV_PAR + ".", "A", "api-scaleway-fr-par-0", "answered"),
        (KV_PAR + ".", "AAAA", "batch-scaleway-fr-par-0", "nodata"),
        ("example.com.", "A", None, "refused"),
        ("boom.bascule.internal.", "A", None, "nxdomain"),
        (KV_PAR + ".", "A", "api-scaleway-fr-par-0", "answered"),
    ]
    assert all(a.t <= b.t for a, b in itertools.pairwise(seen))


@pytest.fixture
def not_root(monkeypatch: pytest.MonkeyPatch) -> object:
    names.resolver_problem.cache_clear()
    monkeypatch.setattr(names.os, "geteuid", lambda: 1000)
    yield None
    names.resolver_problem.cache_clear()


def test_where_a_replica_cannot_have_its_resolver_a_design_with_names_is_refused(
    not_root: object, tmp_path: Path
) -> None:
    text = design_text(NAMED)
    design = parse_design(text, "d.yaml")
    reason = names_refusal(layout(design).resolving)
    assert reason is not None and reason.startswith("api: ") and "run it as root" in reason
    assert "uid 1000" in reason and "{NAME.url}" in reason
    assert names_refusal(frozenset()) is None
    # `bascule plan` prints it and exits 2; a run is refused before anything starts.
    (tmp_path / "d.yaml").write_text(text)
    (tmp_path / "s.yaml").write_text(
        "id: s\ntitle: s\ndesign: d.yaml\n"
        "phases: [{name: p, at: 1s, for: 1s, fault: {kind: latency, fixed: 10ms}, target: {component: kv}}]\n"
        "steady_state: {probes: [{kind: http, url: /healthz}]}\n"
    )
    result = CliRunner().invoke(app, ["plan", str(tmp_path / "s.yaml")], env={"COLUMNS": "300"})
    assert result.exit_code == 2, result.output
    assert "refused" in result.output and "run it as root" in result.output
    started = LocalStarter(LocalOptions()).start(
        StartRequest(design, tmp_path / "d.yaml", tmp_path / "run", print)
    )
    assert isinstance(started, Refusal) and "run it as root" in started.reason
    assert not (tmp_path / "run").exists()


REQUIRED = bool(os.environ.get("BASCULE_REQUIRE_DNS_CLIENTS"))


@pytest.mark.skipif(
    names.resolver_problem() is not None and not REQUIRED, reason=str(names.resolver_problem())
)
def test_a_wrapped_command_sees_its_own_resolver_and_the_host_keeps_its_own(tmp_path: Path) -> None:
    assert names.resolver_problem() is None
    before = Path("/etc/resolv.conf").read_text()
    files = names.write_resolver(tmp_path, "api-scaleway-fr-par-0", "127.80.1.2")
    shown = subprocess.run(
        namespace_argv(("sh", "-c", "cat /etc/resolv.conf; grep ^hosts: /etc/nsswitch.conf; echo $$"), files),
        capture_output=True,
        text=True,
        timeout=10,
        check=True,
    ).stdout.splitlines()
    assert shown[1:3] == ["nameserver 127.80.1.2", "hosts:          files dns"]
    assert Path("/etc/resolv.conf").read_text() == before
