"""DNS faults on an own service reached by name, seen by clients nobody here wrote.

A stack of three own services in scaleway/fr-par: ``pong`` (the callee, an HTTP/1.1 server with
keep-alive) and two callers given it as ``{pong.dns_url}`` — ``pyclient`` (httpx, Python's
system resolver) and ``goclient`` (Go's net/http and Go's own resolver, built here from
tests/own_dns/goclient.go with the standard library only). Each caller runs, as bascule starts it,
in a mount namespace whose /etc/resolv.conf names bascule's DNS server; curl (Debian's) is run in
that same namespace (`names.namespace_argv` with the pyclient replica's resolver files).

Under ``dns`` with ``new_connections_only`` (2025-10-20), pooled connections keep working and new
lookups fail; without it, the routes' open connections are reset and pooled clients must look the
name up again, and fail too. These tests need Linux, root and util-linux (`names.resolver_problem`),
curl and Go; .ci/run installs curl and Go and sets BASCULE_REQUIRE_DNS_CLIENTS, so that there a
missing one fails, never skips.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from bascule.faults import Dns, DnsAnswer
from bascule.model.loading import parse_design
from bascule.model.selector import Selector
from bascule.plan.model import Action, ActionOp
from bascule.plan.resolve import resolve
from bascule.targets.local.dns import Lookup
from bascule.targets.local.names import namespace_argv, resolver_problem
from bascule.targets.local.stack import LocalStack
from bascule.targets.local.target import LocalTarget

HERE = Path(__file__).resolve().parent / "own_dns"
PAR = "scaleway/fr-par"
NAME = "pong.scaleway-fr-par.bascule.internal."
CURL = shutil.which("curl")
GO = shutil.which("go") or shutil.which("go", path="/usr/local/go/bin:/usr/lib/go/bin")
PROBLEM = resolver_problem()
REQUIRED = bool(os.environ.get("BASCULE_REQUIRE_DNS_CLIENTS"))
MISSING = [what for what, there in (("curl", CURL), ("go", GO)) if there is None]
if PROBLEM is not None:
    MISSING.append(PROBLEM)

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        bool(MISSING) and not REQUIRED,
        reason=f"needs curl, Go and a private resolver per replica: {MISSING}",
    ),
]


def test_what_these_tests_need_is_there_when_ci_requires_it() -> None:
    assert not MISSING, f"BASCULE_REQUIRE_DNS_CLIENTS is set but: {MISSING}"


def design_text(go_binary: Path) -> str:
    def caller(name: str, argv: str) -> str:
        return f"""
  {name}:
    calls: [pong]
    command:
      argv: {argv}
      cwd: {HERE}
      env: {{SERVER_URL: "{{pong.dns_url}}"}}
      ready: {{path: /healthz}}
    replicas: {{{PAR}: 1}}"""

    return f"""
id: own-dns
title: two third-party clients call pong by name
regions: [{{id: {PAR}}}]
components:
  pong:
    entry: true
    command:
      argv: [{sys.executable}, pong.py, --port, "{{port}}"]
      cwd: {HERE}
      ready: {{path: /healthz}}
    replicas: {{{PAR}: 1}}
{caller("pyclient", f'[{sys.executable}, httpx_client.py, --port, "{{port}}"]')}
{caller("goclient", f'[{go_binary}, -port, "{{port}}"]')}
replication: {{mode: none}}
"""


@dataclass
class Stack:
    stack: LocalStack
    target: LocalTarget
    lookups: list[Lookup]

    def url(self, component: str) -> str:
        url = self.stack.supervisor.replica(f"{component}-scaleway-fr-par-0").url
        assert url is not None
        return url

    def ask(self, component: str, *, fresh: bool = False) -> dict[str, object]:
        answer: dict[str, object] = httpx.get(
            self.url(component) + ("/ask?fresh=1" if fresh else "/ask"), timeout=40
        ).json()
        return answer

    def curl(self, *args: str) -> list[str]:
        """curl's argv, run in the pyclient replica's namespace (its resolver)."""
        assert CURL is not None
        return list(namespace_argv((CURL, *args), self.stack.resolvers["pyclient-scaleway-fr-par-0"]))

    def pong_url(self) -> str:
        port = self.stack.route_ports["pyclient@scaleway-fr-par->pong@scaleway-fr-par"]
        return f"http://{NAME.rstrip('.')}:{port}/pong"

    def seen_after(self, instant: float, agent: str) -> int:
        seen = httpx.get(self.url("pong") + "/seen", timeout=5).json()
        return sum(1 for t, ua in seen if t > instant and ua.startswith(agent))

    def apply(self, fault: Dns, index: int) -> tuple[Action, float]:
        """Apply `fault` on pong's name; the action (to revert) and when it was in force."""
        touch, problems = resolve(self.stack.design, fault, Selector(component="pong"), ("test",))
        assert not problems, problems
        action = Action(0.0, ActionOp.APPLY, index, fault)
        return action, self.target.apply(action, touch).monotonic


@pytest.fixture(scope="module")
def running(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    assert GO is not None
    work = tmp_path_factory.mktemp("own-dns")
    binary = work / "goclient"
    # The standard library only: nothing is downloaded (GOFLAGS=-mod=mod is not needed).
    subprocess.run(
        [GO, "build", "-o", str(binary), str(HERE / "goclient.go")],
        check=True,
        timeout=540,
        env={**os.environ, "GOFLAGS": "-buildvcs=false"},
    )
    text = design_text(binary)
    (work / "design.yaml").write_text(text)
    lookups: list[Lookup] = []
    stack = LocalStack.start(
        parse_design(text, str(work / "design.yaml")),
        work / "design.yaml",
        work / "run",
        timeout=60,
        on_lookup=lookups.append,
    )
    target = LocalTarget(stack)
    try:
        yield Stack(stack, target, lookups)
    finally:
        target.close()


def run_with_fault(running: Stack, fault: Dns, index: int) -> dict[str, object]:
    """Warm every client's pool, start a curl that asks five times over one connection (1/s), apply
    `fault` once curl's first answer is in, ask everyone pooled and fresh, then revert."""
    for who in ("pyclient", "goclient"):
        assert running.ask(who) == {"ok": True, "status": 200, "error": None}, who
    url = running.pong_url()
    per_transfer = [arg for _ in range(5) for arg in ("-o", "/dev/null", url)]
    started = time.monotonic()
    long_curl = subprocess.Popen(
        running.curl("-s", "--rate", "1/s", "-w", "%{http_code} %{num_connects}\\n", *per_transfer),
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 10
        while running.seen_after(started, "curl/") < 1:
            assert time.monotonic() < deadline, "curl's first request never arrived"
            time.sleep(0.02)
        action, applied = running.apply(fault, index)
        seen: dict[str, object] = {
            "applied": applied,
            "py pooled": running.ask("pyclient"),
            "go pooled": running.ask("goclient"),
            "py fresh": running.ask("pyclient", fresh=True),
            "go fresh": running.ask("goclient", fresh=True),
        }
        fresh_curl = subprocess.run(
            running.curl("-s", "-o", "/dev/null", "--connect-timeout", "5", url),
            capture_output=True,
            timeout=30,
            check=False,
        )
        seen["curl fresh exit"] = fresh_curl.returncode
        out, _ = long_curl.communicate(timeout=30)
        seen["curl pooled"] = [line.split() for line in out.splitlines()]
        seen["curl after fault"] = running.seen_after(applied, "curl/")
        seen["lookups"] = [lk for lk in running.lookups if lk.t >= applied and lk.name == NAME]
        running.target.revert(action)
        seen["py fresh after revert"] = running.ask("pyclient", fresh=True)
        seen["go fresh after revert"] = running.ask("goclient", fresh=True)
    finally:
        if long_curl.poll() is None:
            long_curl.kill()
            long_curl.wait()
    return seen


def failed(answer: object) -> bool:
    assert isinstance(answer, dict)
    return answer["ok"] is False and answer["status"] is None and bool(answer["error"])


@pytest.mark.timeout(600)
def test_pooled_connections_keep_working_and_new_lookups_fail(running: Stack) -> None:
    seen = run_with_fault(running, Dns(answer=DnsAnswer.NODATA, new_connections_only=True), 0)
    ok = {"ok": True, "status": 200, "error": None}
    assert seen["py pooled"] == ok and seen["go pooled"] == ok, seen
    assert failed(seen["py fresh"]) and failed(seen["go fresh"]), seen
    assert "no such host" in str(seen["go fresh"]), seen["go fresh"]
    assert seen["curl fresh exit"] == 6, seen  # CURLE_COULDNT_RESOLVE_HOST
    # curl's five answers, over the one connection it opened before the fault (0 new connects).
    assert seen["curl pooled"] == [["200", "1"]] + [["200", "0"]] * 4, seen["curl pooled"]
    assert isinstance(seen["curl after fault"], int) and seen["curl after fault"] >= 3, seen
    askers = {lk.asker for lk in seen["lookups"] if lk.outcome == "nodata"}  # type: ignore[attr-defined]
    assert {"pyclient-scaleway-fr-par-0", "goclient-scaleway-fr-par-0"} <= askers, seen["lookups"]
    assert seen["py fresh after revert"] == ok and seen["go fresh after revert"] == ok, seen


@pytest.mark.timeout(600)
def test_without_new_connections_only_pooled_clients_must_look_up_again(running: Stack) -> None:
    seen = run_with_fault(running, Dns(answer=DnsAnswer.NODATA, new_connections_only=False), 1)
    ok = {"ok": True, "status": 200, "error": None}
    # The reset closed their pooled connection: a new one needs a lookup, which fails.
    assert failed(seen["py pooled"]) and failed(seen["go pooled"]), seen
    assert "no such host" in str(seen["go pooled"]), seen["go pooled"]
    assert failed(seen["py fresh"]) and failed(seen["go fresh"]), seen
    assert seen["curl fresh exit"] == 6, seen
    curl = seen["curl pooled"]
    assert isinstance(curl, list) and curl[0] == ["200", "1"], curl
    # Its connection was reset: its next transfer had to connect anew (what it then got is curl's
    # own DNS cache's doing: it keeps an address 60 s, whatever the TTL).
    assert curl[1][1] == "1", curl
    assert seen["py fresh after revert"] == ok and seen["go fresh after revert"] == ok, seen


@pytest.mark.timeout(600)
@pytest.mark.parametrize(
    ("answer", "outcome", "curl_exit"),
    [
        (DnsAnswer.NXDOMAIN, "nxdomain", 6),
        (DnsAnswer.NODATA, "nodata", 6),
        (DnsAnswer.SERVFAIL, "servfail", 6),
        (DnsAnswer.DROP, "dropped", 28),  # CURLE_OPERATION_TIMEDOUT: no answer within 3 s
    ],
)
def test_each_answer_reaches_a_new_lookup(
    running: Stack, answer: DnsAnswer, outcome: str, curl_exit: int
) -> None:
    index = 10 + list(DnsAnswer).index(answer)
    action, applied = running.apply(Dns(answer=answer), index)
    try:
        done = subprocess.run(
            running.curl("-s", "-o", "/dev/null", "--connect-timeout", "3", running.pong_url()),
            capture_output=True,
            timeout=30,
            check=False,
        )
    finally:
        running.target.revert(action)
    assert done.returncode == curl_exit, done
    lookups = [lk for lk in running.lookups if lk.t >= applied and lk.name == NAME]
    assert lookups and {lk.outcome for lk in lookups} == {outcome}, lookups
    assert {lk.asker for lk in lookups} == {"pyclient-scaleway-fr-par-0"}, lookups
    after = subprocess.run(
        running.curl("-s", "-o", "/dev/null", "-w", "%{http_code}", running.pong_url()),
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert after.stdout == "200", after


def test_recover_finds_the_processes_started_in_a_namespace(running: Stack) -> None:
    from bascule.targets.local.procfs import find_marked

    marked = {pid for pid, _ in find_marked(running.stack.marker)}
    started = {r.process.pid for r in running.stack.supervisor.replicas() if r.process is not None}
    assert started and started <= marked, (started, marked)
    for pid in started:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        assert b"unshare" not in cmdline[0], cmdline  # the service itself, exec'd in place
    states = json.loads((running.stack.run_dir / "stack.json").read_text())["dns"]["resolvers"]
    assert set(states) == {"pyclient-scaleway-fr-par-0", "goclient-scaleway-fr-par-0"}


@pytest.mark.timeout(300)
def test_recover_stops_named_services_left_by_a_killed_stack(tmp_path: Path) -> None:
    """`bascule stack up` of the example given names, SIGKILLed once ready: `bascule recover` finds
    its services — started through the namespace wrapper — by PID and marker, and stops them."""
    from bascule.targets.local.ledger import read_ledger
    from bascule.targets.local.procfs import find_marked, process_alive

    design = Path(__file__).resolve().parent.parent / "examples" / "own-service" / "design-names.yaml"
    run_dir = tmp_path / "stack"
    up = subprocess.Popen(
        [sys.executable, "-m", "bascule", "stack", "up", "--design", str(design), "--run-dir", str(run_dir)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline = time.monotonic() + 120
        while not (run_dir / "stack.json").exists():
            assert up.poll() is None and time.monotonic() < deadline, up.stdout.read() if up.stdout else ""
            time.sleep(0.1)
        state = json.loads((run_dir / "stack.json").read_text())
        assert set(state["dns"]["resolvers"]) == {"notes-api-scaleway-fr-par-0", "notes-api-ovhcloud-gra-0"}
    finally:
        up.kill()
        up.wait()
    ledger = read_ledger(run_dir / "ledger.jsonl")
    assert ledger.run is not None
    marked = find_marked(ledger.run.marker)
    assert len(marked) == 4, marked  # two apis (in their namespaces) and two kvs, orphaned
    done = subprocess.run(
        [sys.executable, "-m", "bascule", "recover", str(run_dir)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert not any(process_alive(pid, start) for pid, start in marked)
