"""The local target (`bascule.targets.local.target`): every fault kind on a real stack of processes,
routes and DNS, overlapping faults, activation latency, and `bascule inject` over the control channel.

One stack of ``designs/active-passive-sovereign.yaml`` (started with its control channel) serves
the whole module; every test reverts what it applied, and a fixture checks that nothing is left.
"""

from __future__ import annotations

import asyncio
import signal
import socket
import statistics
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from local_helpers import ROOT, phase

from bascule.errors import FaultError, PlanError
from bascule.faults import (
    Blackhole,
    ControlPlane,
    Crash,
    DataLoss,
    Dns,
    DnsAnswer,
    Flap,
    Hang,
    HttpError,
    Identity,
    IdentityMode,
    Latency,
    OutageMode,
    Partition,
    Refuse,
    RegionOutage,
    ReplicationPause,
    StaleIndex,
    Throttle,
)
from bascule.model.design import Design
from bascule.model.loading import parse_design, read_design
from bascule.model.scenario import Phase, Replay, Scenario
from bascule.model.selector import Selector
from bascule.plan import ActionOp, plan
from bascule.stack.layout import layout
from bascule.stack.net import DnsOutcome, NetConfig, dns_outcome, make_async_client
from bascule.stack.supervisor import ProcessState, Supervisor
from bascule.targets.local import faultstate as fs
from bascule.targets.local.board import FaultBoard
from bascule.targets.local.control import ControlClient
from bascule.targets.local.dns import DnsServer
from bascule.targets.local.effects import (
    DnsFault,
    Freeze,
    Kill,
    ResetConnections,
    RouteFault,
    Wipe,
    compute_effects,
)
from bascule.targets.local.inject import InjectEvent, InjectEventKind, inject
from bascule.targets.local.ledger import LEDGER_FILE, read_ledger
from bascule.targets.local.proxy import FaultPlane
from bascule.targets.local.recover import recover
from bascule.targets.local.stack import LocalStack
from bascule.targets.local.target import LocalTarget, check_plan

AWS = "aws/us-east-1"
PAR = "scaleway/fr-par"
APS = ROOT / "designs" / "active-passive-sovereign.yaml"


@pytest.fixture(scope="module")
def aps() -> Design:
    return read_design(APS)


# -- pure: what each kind does to the stack -------------------------------------------------------


def effects_of(design: Design, fault: object, selector: Selector) -> tuple[object, ...]:
    _, touch = phase(design, fault, selector)  # type: ignore[arg-type]
    return compute_effects(fault, touch, layout(design))  # type: ignore[arg-type]


def routes_in(effects: tuple[object, ...]) -> dict[str, fs.ProxyFault]:
    return {e.route: e.state for e in effects if isinstance(e, RouteFault)}


def test_region_outage_cuts_every_route_into_and_out_of_the_region_and_freezes_it(aps: Design) -> None:
    effects = effects_of(aps, RegionOutage(), Selector(region=AWS))
    assert effects[0] == Freeze(AWS)
    routes = routes_in(effects)
    assert routes["clients->gateway@aws-us-east-1"] == fs.Blackhole()
    assert "store@aws-us-east-1->store@scaleway-fr-par" in routes
    assert "gateway@scaleway-fr-par->retriever@aws-us-east-1" in routes
    assert "gateway@scaleway-fr-par->retriever@scaleway-fr-par" not in routes
    assert set(routes.values()) == {fs.Blackhole()}
    refused = effects_of(aps, RegionOutage(mode=OutageMode.REFUSE), Selector(region=AWS))
    assert set(routes_in(refused).values()) == {fs.Refuse()}


def test_partition_and_replication_pause_leave_clients_alone(aps: Design) -> None:
    cut = routes_in(effects_of(aps, Partition(), Selector(link=(AWS, PAR))))
    assert not [r for r in cut if r.startswith("clients->")]
    assert {
        "store@aws-us-east-1->store@scaleway-fr-par",
        "store@scaleway-fr-par->store@aws-us-east-1",
    } <= set(cut)
    assert all("aws-us-east-1" in r and "scaleway-fr-par" in r for r in cut)
    paused = routes_in(effects_of(aps, ReplicationPause(), Selector(region=PAR)))
    assert paused == {"store@aws-us-east-1->store@scaleway-fr-par": fs.Blackhole()}


def test_dns_faults_names_and_resets_pools_only_when_asked(aps: Design) -> None:
    selector = Selector(component="store", region=AWS)
    pooled = effects_of(aps, Dns(answer=DnsAnswer.SERVFAIL), selector)
    assert pooled == (DnsFault("store.aws-us-east-1.bascule.internal", fs.DnsFaultMode.SERVFAIL),)
    everyone = effects_of(aps, Dns(new_connections_only=False), selector)
    resets = {e.route for e in everyone if isinstance(e, ResetConnections)}
    to_store = [r for r in layout(aps).routes if r.host == "store.aws-us-east-1.bascule.internal"]
    assert resets == {r.name for r in to_store if r.hop.source is not None} and len(resets) == 4


@pytest.mark.parametrize(
    ("identity", "state"),
    [
        (Identity(), fs.HttpError(statuses=(500, 503))),
        (Identity(mode=IdentityMode.SLOW, latency=2.0), fs.Latency(fixed=2.0)),
        (Identity(mode=IdentityMode.TIMEOUT), fs.Blackhole()),
    ],
)
def test_identity_acts_on_the_routes_to_the_token_service(
    aps: Design, identity: Identity, state: fs.ProxyFault
) -> None:
    routes = routes_in(effects_of(aps, identity, Selector(dependency="aws-sts")))
    assert routes and all(name.endswith("->aws-sts@aws-us-east-1") for name in routes)
    assert set(routes.values()) == {state}


def test_process_kinds(aps: Design) -> None:
    crash = effects_of(aps, Crash(restart_after=0.5), Selector(component="gateway", region=AWS))
    assert crash == (Kill("gateway-aws-us-east-1-0", 0.5), Kill("gateway-aws-us-east-1-1", 0.5))
    assert effects_of(aps, DataLoss(), Selector(region=PAR)) == (Wipe("store-scaleway-fr-par-0"),)
    assert effects_of(aps, ControlPlane(), Selector(provider="aws")) == (Freeze(AWS),)
    hops = routes_in(effects_of(aps, Throttle(retry_after=3), Selector(component="llm", region=PAR)))
    assert set(hops.values()) == {fs.Throttle(retry_after=3.0)}


def test_a_flap_is_applied_as_its_inner_fault(aps: Design) -> None:
    flap = Flap(fault=HttpError(), period=2.0)
    _, touch = phase(aps, flap, Selector(component="llm"))
    with pytest.raises(FaultError, match="inner fault"):
        compute_effects(flap, touch, layout(aps))


ODD_DESIGN = """
id: odd
regions:
  - {id: aws/us-east-1, depends_on: [registry]}
  - {id: scaleway/fr-par}
dependencies:
  registry: {kind: registry, region: aws/us-east-1}
components:
  gateway: {replicas: {aws/us-east-1: 1, scaleway/fr-par: {replicas: 1, max_inflight: 8}}}
  retriever: {replicas: {aws/us-east-1: 1, scaleway/fr-par: 1}}
  store: {replicas: {aws/us-east-1: 1, scaleway/fr-par: 1}}
  llm: {replicas: {aws/us-east-1: 1, scaleway/fr-par: {replicas: 0, max_replicas: 2}}}
  cache: {replicas: {aws/us-east-1: 1}}
"""


def test_kinds_the_stack_cannot_carry_out_are_refused_at_plan_time() -> None:
    design = parse_design(ODD_DESIGN)
    phases = [
        ("hang-cache", Hang(), Selector(component="cache")),
        ("blackhole-registry", Blackhole(), Selector(dependency="registry")),
        ("dns-registry", Dns(), Selector(dependency="registry")),
        ("crash-standby-llm", Crash(), Selector(component="llm", region=PAR, replica=1)),
        ("crash-gateway", Crash(), Selector(component="gateway")),
        ("outage", RegionOutage(), Selector(region=AWS)),
    ]
    scenario = Scenario(
        id="refusals",
        title="refusals",
        phases=tuple(
            Phase(name=name, at=float(i), **{"for": 1.0}, fault=fault, target=selector)
            for i, (name, fault, selector) in enumerate(phases)
        ),
    )
    refusals = check_plan(plan(design, scenario), design)
    assert len(refusals) == 3, refusals
    assert refusals[0].startswith(
        "phase 0 (hang-cache, hang): hang: the local stack runs no process for cache"
    )
    assert "phase 1 (blackhole-registry" in refusals[1] and "only identity services" in refusals[1]
    assert "phase 2 (dns-registry" in refusals[2] and "registry.aws-us-east-1" in refusals[2]
    # A parked replica (above `replicas`, up to `max_replicas`) is a process the stack may start:
    # a crash of it is carried out — killing it if its region scaled up by then, else nothing.
    _, touch = phase(design, Crash(), Selector(component="llm", region=PAR, replica=1))
    assert compute_effects(Crash(), touch, layout(design)) == (Kill("llm-scaleway-fr-par-1", 5.0),)
    other = parse_design(ODD_DESIGN.replace("id: odd", "id: other"))
    assert check_plan(plan(design, scenario), other) == ["the plan is for design 'odd', not 'other'"]


# -- the board: overlapping faults on shared parts ------------------------------------------------


@pytest.fixture
def board(tmp_path: Path) -> Iterator[tuple[FaultBoard, FaultPlane, DnsServer, Supervisor]]:
    plane, dns, supervisor = FaultPlane(), DnsServer(), Supervisor(tmp_path / "logs")
    try:
        plane.start()
        dns.start()
        plane.add_route("r", [])
        yield FaultBoard(plane, dns, supervisor), plane, dns, supervisor
    finally:
        supervisor.stop()
        dns.stop()
        plane.stop()


def test_overlapping_faults_keep_the_most_recent_still_active(
    board: tuple[FaultBoard, FaultPlane, DnsServer, Supervisor],
) -> None:
    fb, plane, dns, supervisor = board
    slow = fs.Latency(fixed=0.1)
    fb.apply("a", [Freeze("eu"), RouteFault("r", fs.Blackhole())])
    fb.apply("b", [Freeze("eu"), RouteFault("r", slow), DnsFault("x", fs.DnsFaultMode.NXDOMAIN)])
    assert plane.fault("r") == slow and supervisor.is_frozen("eu")
    assert fb.revert("a")
    assert plane.fault("r") == slow and supervisor.is_frozen("eu")
    assert fb.revert("b")
    assert plane.fault("r") == fs.Pass() and not supervisor.is_frozen("eu") and dns.faults() == {}

    fb.apply("a", [RouteFault("r", fs.Blackhole())])
    fb.apply("b", [RouteFault("r", slow)])
    fb.revert("b")
    assert plane.fault("r") == fs.Blackhole()
    with pytest.raises(ValueError, match="already applied"):
        fb.apply("a", [])
    assert not fb.revert("nope")
    assert fb.revert_all() == ["a"]
    assert plane.fault("r") == fs.Pass() and fb.active() == {}


def test_a_fault_that_fails_half_way_is_undone(
    board: tuple[FaultBoard, FaultPlane, DnsServer, Supervisor],
) -> None:
    fb, plane, _, supervisor = board
    with pytest.raises(FaultError, match="no route named"):
        fb.apply("a", [Freeze("eu"), RouteFault("r", fs.Refuse()), RouteFault("missing", fs.Refuse())])
    assert not supervisor.is_frozen("eu") and plane.fault("r") == fs.Pass() and fb.active() == {}


# -- on a running stack ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def running(tmp_path_factory: pytest.TempPathFactory, aps: Design) -> Iterator[LocalTarget]:
    stack = LocalStack.start(aps, APS, tmp_path_factory.mktemp("aps"), control=True)
    target = LocalTarget(stack)
    try:
        yield target
    finally:
        target.close()
    assert read_ledger(stack.run_dir / LEDGER_FILE).closed


@pytest.fixture
def target(running: LocalTarget) -> Iterator[LocalTarget]:
    yield running
    stack = running.stack
    assert stack is not None
    left = stack.board.active()
    stack.board.revert_all()
    assert not left, f"a test left faults in force: {sorted(left)}"


def stack_of(target: LocalTarget) -> LocalStack:
    assert target.stack is not None
    return target.stack


def route_url(target: LocalTarget, route: str) -> str:
    return f"http://127.0.0.1:{stack_of(target).route_ports[route]}"


def replica_url(target: LocalTarget, name: str) -> str:
    url = stack_of(target).supervisor.replica(name).url
    assert url is not None
    return url


def wait_for(predicate: object, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():  # type: ignore[operator]
            return
        time.sleep(0.05)
    raise AssertionError(f"not within {timeout} s: {what}")


STORE_AWS = "gateway@aws-us-east-1->store@aws-us-east-1"
STORE_PAR = "gateway@scaleway-fr-par->store@scaleway-fr-par"


def _activation_latencies(
    target: LocalTarget, cycles: int, *, prepared: bool, hold: float = 0.02
) -> tuple[list[float], list[float], int]:
    """Apply and revert http-error on a hop `cycles` times under a load running in its own
    process, as the runner's does (clocks are CLOCK_MONOTONIC, shared between processes).

    The latency of one fault is from the call to ``apply`` until the first 503 answered after it.
    A fault during which a request was sent after it was in force and answered 200 counts as
    infinitely late; one during which the load got no answer through (one slow answer spanning
    the whole window, or a transport error) is not observed, and counted apart. Returns the latencies,
    ``apply``'s own durations and that count."""
    url = route_url(target, STORE_AWS) + "/healthz"
    poller = subprocess.Popen(
        [sys.executable, str(ROOT / "tests" / "local_helpers.py"), "poll", url, str(cycles * 2.5 * hold + 2)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    windows: list[tuple[float, float, float]] = []
    took: list[float] = []
    try:
        assert poller.stdout is not None and poller.stdout.readline().strip() == "ready"
        for i in range(cycles):
            action, touch = phase(
                target.design, HttpError(), Selector(component="store", region=AWS), 100 + i
            )
            if prepared:
                target.prepare(action, touch)
                time.sleep(hold / 4)
            called = time.monotonic()
            moved = target.apply(action, touch)
            took.append(moved.took)
            time.sleep(hold)
            windows.append((called, moved.monotonic, target.revert(action).monotonic))
            time.sleep(hold)
        out, _ = poller.communicate("", timeout=30)
    finally:
        if poller.poll() is None:
            poller.kill()
            poller.wait()
    answers = [(float(a), float(b), int(c)) for a, b, c in (line.split() for line in out.splitlines())]
    latencies: list[float] = []
    unobserved = 0
    for called, in_force, reverted in windows:
        inside = [(sent, recv, status) for sent, recv, status in answers if called <= recv <= reverted]
        affected = [recv for _, recv, status in inside if status == 503]
        if affected:
            latencies.append(min(affected) - called)
        elif any(sent >= in_force and status == 200 for sent, _, status in inside):
            latencies.append(float("inf"))
        else:
            unobserved += 1
    return latencies, took, unobserved


def _ms(values: list[float]) -> str:
    cuts = statistics.quantiles(values, n=100)
    return f"p50 {cuts[49] * 1e3:.2f} ms, p99 {cuts[98] * 1e3:.2f} ms, max {max(values) * 1e3:.2f} ms"


@pytest.mark.slow
def test_activation_latency_from_the_call_to_the_first_affected_request(target: LocalTarget) -> None:
    _activation_latencies(target, 30, prepared=True)  # warm-up: code paths, caches, connections
    latencies, took, unobserved = _activation_latencies(target, 200, prepared=True)
    cold, cold_took, cold_unobserved = _activation_latencies(target, 100, prepared=False)
    print(
        f"\nactivation latency, call → first 503 answered, undo record prepared ahead "
        f"({len(latencies)} faults observed, {unobserved} not): {_ms(latencies)}; apply() {_ms(took)}"
        f"\nthe same with the undo record fsynced inside apply() "
        f"({len(cold)} observed, {cold_unobserved} not): {_ms(cold)}; apply() {_ms(cold_took)}"
    )
    assert unobserved <= 10 and cold_unobserved <= 10
    assert statistics.quantiles(latencies, n=100)[98] <= 0.010
    assert max(cold) < 0.5


async def _dns_round(port: int, dns_port: int, apply: object, expected: DnsOutcome | None) -> None:
    config = NetConfig(dns_server=("127.0.0.1", dns_port), connect_timeout=0.5, request_timeout=2.0)
    url = f"http://store.aws-us-east-1.bascule.internal:{port}/healthz"
    async with make_async_client(config) as pooled:
        assert (await pooled.get(url)).status_code == 200
        apply()  # type: ignore[operator]
        assert (await pooled.get(url)).status_code == 200, "a pooled connection keeps working"
        async with make_async_client(config) as fresh:
            with pytest.raises(httpx.ConnectError) as caught:
                await fresh.get(url)
            assert dns_outcome(caught.value) is expected


@pytest.mark.parametrize(
    ("answer", "outcome"),
    [
        (DnsAnswer.NODATA, DnsOutcome.NODATA),
        (DnsAnswer.NXDOMAIN, DnsOutcome.NXDOMAIN),
        (DnsAnswer.SERVFAIL, DnsOutcome.SERVFAIL),
        (DnsAnswer.DROP, DnsOutcome.TIMEOUT),
    ],
)
def test_dns_new_connections_only(target: LocalTarget, answer: DnsAnswer, outcome: DnsOutcome) -> None:
    stack = stack_of(target)
    action, touch = phase(target.design, Dns(answer=answer), Selector(component="store", region=AWS))
    asyncio.run(
        _dns_round(stack.route_ports[STORE_AWS], stack.dns.port, lambda: target.apply(action, touch), outcome)
    )
    target.revert(action)
    with httpx.Client(trust_env=False) as client:
        assert client.get(route_url(target, STORE_AWS) + "/healthz").status_code == 200


def test_dns_for_every_connection_resets_pooled_ones(target: LocalTarget) -> None:
    stack = stack_of(target)
    action, touch = phase(
        target.design, Dns(new_connections_only=False), Selector(component="store", region=AWS)
    )
    config = NetConfig(dns_server=("127.0.0.1", stack.dns.port), connect_timeout=0.5)
    url = f"http://store.aws-us-east-1.bascule.internal:{stack.route_ports[STORE_AWS]}/healthz"

    async def scenario() -> None:
        async with make_async_client(config) as pooled:
            assert (await pooled.get(url)).status_code == 200
            target.apply(action, touch)
            await asyncio.sleep(0.05)
            with pytest.raises(httpx.ConnectError) as caught:
                await pooled.get(url)
            assert dns_outcome(caught.value) is DnsOutcome.NODATA
            target.revert(action)
            assert (await pooled.get(url)).status_code == 200

    asyncio.run(scenario())


def test_blackhole_times_out_and_refuse_is_refused_at_once(target: LocalTarget) -> None:
    route = "gateway@scaleway-fr-par->retriever@scaleway-fr-par"
    port = stack_of(target).route_ports[route]
    selector = Selector(component="retriever", region=PAR)
    with httpx.Client(trust_env=False, timeout=0.4) as client:
        action, touch = phase(target.design, Blackhole(), selector)
        target.apply(action, touch)
        try:
            with pytest.raises(httpx.TimeoutException):
                client.get(f"http://127.0.0.1:{port}/healthz")
        finally:
            target.revert(action)
        action, touch = phase(target.design, Refuse(), selector, 1)
        target.apply(action, touch)
        try:
            elapsed = []
            for _ in range(20):
                began = time.perf_counter()
                with pytest.raises(ConnectionRefusedError):
                    socket.create_connection(("127.0.0.1", port), timeout=1.0)
                elapsed.append(time.perf_counter() - began)
            print(f"\nrefuse: connection refused after at most {max(elapsed) * 1e3:.2f} ms (20 tries)")
            assert max(elapsed) < 0.050
        finally:
            target.revert(action)
        assert client.get(f"http://127.0.0.1:{port}/healthz").status_code == 200


def test_latency_http_error_and_throttle_on_a_hop(target: LocalTarget) -> None:
    url = route_url(target, "gateway@scaleway-fr-par->llm@scaleway-fr-par") + "/healthz"
    selector = Selector(component="llm", region=PAR)
    with httpx.Client(trust_env=False, timeout=2.0) as client:
        action, touch = phase(target.design, Latency(fixed=0.3), selector)
        target.apply(action, touch)
        began = time.monotonic()
        assert client.get(url).status_code == 200
        assert time.monotonic() - began >= 0.3
        ended = target.revert(action).effects
        # every route into the llm of fr-par slows down, the other region's gateway's included
        assert set(ended) == {
            "route gateway@scaleway-fr-par->llm@scaleway-fr-par: latency",
            "route gateway@aws-us-east-1->llm@scaleway-fr-par: latency",
        }
        action, touch = phase(target.design, HttpError(statuses=(502,)), selector, 1)
        target.apply(action, touch)
        assert client.get(url).status_code == 502
        target.revert(action)
        action, touch = phase(target.design, Throttle(retry_after=2.0), selector, 2)
        target.apply(action, touch)
        answer = client.get(url)
        assert answer.status_code == 429 and answer.headers["retry-after"] == "2"
        assert answer.json()["type"] == "rate_limited"
        target.revert(action)
        assert client.get(url).status_code == 200


def test_hang_pauses_the_process_until_reverted(target: LocalTarget) -> None:
    stack = stack_of(target)
    url = route_url(target, "gateway@scaleway-fr-par->llm@scaleway-fr-par") + "/healthz"
    action, touch = phase(target.design, Hang(), Selector(component="llm", region=PAR))
    target.apply(action, touch)
    try:
        assert stack.supervisor.replica("llm-scaleway-fr-par-0").state is ProcessState.PAUSED
        with pytest.raises(httpx.TimeoutException):
            httpx.get(url, timeout=0.4, trust_env=False)
    finally:
        target.revert(action)
    assert stack.supervisor.replica("llm-scaleway-fr-par-0").state is ProcessState.RUNNING
    assert httpx.get(url, timeout=2.0, trust_env=False).status_code == 200


def test_identity_errors_on_token_requests(target: LocalTarget) -> None:
    url = route_url(target, "store@aws-us-east-1->aws-sts@aws-us-east-1")
    action, touch = phase(target.design, Identity(statuses=(503,)), Selector(dependency="aws-sts"))
    target.apply(action, touch)
    try:
        assert httpx.post(url + "/v1/token", json={}, trust_env=False).status_code == 503
    finally:
        target.revert(action)
    assert httpx.get(url + "/healthz", trust_env=False).status_code == 200


def test_data_loss_wipes_and_cannot_be_reverted(target: LocalTarget) -> None:
    stats_url = replica_url(target, "store-scaleway-fr-par-0") + "/v1/admin/stats"
    assert httpx.get(stats_url, trust_env=False).json()["documents"] > 0
    action, touch = phase(target.design, DataLoss(), Selector(region=PAR))
    moved = target.apply(action, touch)
    assert moved.effects == ("store store-scaleway-fr-par-0: wiped",)
    assert httpx.get(stats_url, trust_env=False).json()["documents"] == 0
    reverted = target.revert(action)
    assert reverted.changed and reverted.effects == (), "a wipe ends nothing"
    assert httpx.get(stats_url, trust_env=False).json()["documents"] == 0
    state = read_ledger(stack_of(target).ledger.path)
    assert target.key(action) in {r.key for r in state.applied}
    assert target.key(action) not in {r.key for r in state.active}


def test_stale_index_freezes_the_store_index_until_the_last_fault_on_it_ends(target: LocalTarget) -> None:
    index_url = replica_url(target, "store-scaleway-fr-par-0") + "/v1/admin/index"
    first, touch = phase(target.design, StaleIndex(), Selector(region=PAR))
    second, _ = phase(target.design, StaleIndex(), Selector(component="store", region=PAR), index=1)
    moved = target.apply(first, touch)
    assert moved.effects == ("store store-scaleway-fr-par-0: index frozen",)
    frozen = httpx.get(index_url, trust_env=False).json()
    assert frozen["frozen"] is True
    target.apply(second, touch)
    target.revert(first)
    held = httpx.get(index_url, trust_env=False).json()
    assert (held["frozen"], held["frozen_at"]) == (True, frozen["frozen_at"]), "still held by the second"
    target.revert(second)
    assert httpx.get(index_url, trust_env=False).json()["frozen"] is False


def test_every_fault_is_in_the_ledger_before_it_takes_effect(target: LocalTarget) -> None:
    stack = stack_of(target)
    seen: list[bool] = []
    original = stack.board.apply

    def spy(key: str, effects: object) -> None:
        seen.append(key in {r.key for r in read_ledger(stack.ledger.path).active})
        original(key, effects)  # type: ignore[arg-type]

    stack.board.apply = spy  # type: ignore[method-assign]
    try:
        action, touch = phase(target.design, ControlPlane(), Selector(region=PAR))
        target.apply(action, touch)
        target.revert(action)
    finally:
        del stack.board.apply
    assert seen == [True]
    assert target.key(action) not in {r.key for r in read_ledger(stack.ledger.path).active}


@pytest.mark.slow
def test_control_plane_keeps_a_crashed_replica_down_until_it_ends(target: LocalTarget) -> None:
    stack = stack_of(target)
    name = "retriever-scaleway-fr-par-0"
    before = stack.supervisor.replica(name).pid
    frozen, touch = phase(target.design, ControlPlane(), Selector(region=PAR))
    target.apply(frozen, touch)
    try:
        crash, crash_touch = phase(
            target.design, Crash(restart_after=0.2), Selector(component="retriever", region=PAR), 1
        )
        target.apply(crash, crash_touch)
        target.revert(crash)
        time.sleep(1.5)
        assert stack.supervisor.replica(name).state is ProcessState.DOWN
    finally:
        target.revert(frozen)
    wait_for(lambda: stack.supervisor.replica(name).state is ProcessState.RUNNING, 10, "restart")
    assert stack.supervisor.replica(name).pid != before
    url = route_url(target, "gateway@scaleway-fr-par->retriever@scaleway-fr-par") + "/healthz"
    wait_for(lambda: httpx.get(url, trust_env=False).status_code == 200, 10, "retriever answers")
    processes = {(p.name, p.pid) for p in read_ledger(stack.ledger.path).processes}
    assert (name, stack.supervisor.replica(name).pid) in processes


def _peer_status(target: LocalTarget) -> dict[str, float]:
    status = httpx.get(
        replica_url(target, "store-aws-us-east-1-0") + "/v1/replication", trust_env=False
    ).json()
    (peer,) = status["peers"].values()
    return {"pending": peer["pending"], "lag": peer["lag_seconds"]}


@pytest.mark.slow
def test_partition_lets_clients_in_and_replication_catch_up(target: LocalTarget) -> None:
    write_url = route_url(target, STORE_AWS) + "/v1/documents"
    document = {"id": "partition-probe", "text": "written during a partition", "data_class": "internal"}
    action, touch = phase(target.design, Partition(), Selector(link=(AWS, PAR)))
    target.apply(action, touch)
    try:
        assert httpx.post(write_url, json=document, trust_env=False).status_code == 200
        for entry in stack_of(target).entries().values():
            assert httpx.get(entry + "/healthz", trust_env=False).status_code == 200
        time.sleep(2.5)
        during = _peer_status(target)
        assert during["pending"] >= 1 and during["lag"] >= 2.0, during
    finally:
        target.revert(action)
    wait_for(lambda: _peer_status(target)["pending"] == 0, 10, "replication catches up")
    copy = replica_url(target, "store-scaleway-fr-par-0") + "/v1/documents/partition-probe"
    assert httpx.get(copy, trust_env=False).status_code == 200


@pytest.mark.slow
def test_flap_errors_in_alternating_windows(target: LocalTarget) -> None:
    design = target.design
    scenario = Scenario(
        id="flap",
        title="flap",
        replay=Replay(min_phase=0.0),
        phases=(
            Phase(
                name="flap",
                at=0.0,
                **{"for": 6.0},
                fault=Flap(fault=HttpError(), period=2.0, duty=0.5),
                target=Selector(component="store", region=PAR),
            ),
        ),
    )
    planned = plan(design, scenario)
    assert [(a.offset, a.op) for a in planned.actions][:2] == [(0.0, ActionOp.APPLY), (1.0, ActionOp.REVERT)]
    seen: list[tuple[float, int]] = []
    stop = threading.Event()
    url = route_url(target, STORE_PAR) + "/healthz"

    def poll() -> None:
        with httpx.Client(trust_env=False, timeout=1.0) as client:
            while not stop.is_set():
                seen.append((time.monotonic(), client.get(url).status_code))
                time.sleep(0.02)

    poller = threading.Thread(target=poll)
    poller.start()
    start = time.monotonic()
    try:
        for action in planned.actions:
            time.sleep(max(0.0, start + action.offset - time.monotonic()))
            if action.op is ActionOp.APPLY:
                target.apply(action, planned.phases[action.phase].touch)
            else:
                target.revert(action)
        time.sleep(max(0.0, start + 8.0 - time.monotonic()))
    finally:
        stop.set()
        poller.join()
        for action in planned.actions:
            target.revert(action)
    for window in range(8):
        statuses = {s for t, s in seen if start + window + 0.1 <= t <= start + window + 0.9}
        expected = {503} if window % 2 == 0 and window < 6 else {200}
        assert statuses == expected, (window, statuses)


# -- bascule inject over the control channel ------------------------------------------------------


def test_inject_holds_the_fault_then_reverts_it(target: LocalTarget) -> None:
    stack = stack_of(target)
    url = route_url(target, "gateway@scaleway-fr-par->llm@scaleway-fr-par") + "/healthz"
    during: list[int] = []
    events: list[InjectEvent] = []

    def probe(event: InjectEvent) -> None:
        events.append(event)
        if event.kind is InjectEventKind.APPLIED:
            during.append(httpx.get(url, trust_env=False).status_code)

    report = inject(stack.run_dir, HttpError(), Selector(component="llm", region=PAR), 0.5, on_event=probe)
    assert during == [503]
    assert [e.kind for e in events] == [
        InjectEventKind.PLANNED,
        InjectEventKind.APPLIED,
        InjectEventKind.REVERTED,
    ]
    assert not report.interrupted and 0.45 <= report.held < 1.5
    assert httpx.get(url, trust_env=False).status_code == 200
    assert stack.board.active() == {}
    keys = [t.key for t in report.transitions]
    state = read_ledger(stack.ledger.path)
    assert keys[0] in {r.key for r in state.applied} and not {r.key for r in state.active} & set(keys)


def test_inject_of_a_fault_that_acts_once_returns_at_once(target: LocalTarget) -> None:
    """A wipe leaves nothing to hold: with no duration, the injection does not wait for a Ctrl-C
    that could end nothing (seen in a user's trial: it waited 15 minutes, its stack long gone)."""
    stack = stack_of(target)
    events: list[InjectEvent] = []
    started = time.monotonic()
    report = inject(stack.run_dir, DataLoss(), Selector(region=PAR), on_event=events.append)
    assert time.monotonic() - started < 10 and not report.interrupted
    assert [e.kind for e in events] == [
        InjectEventKind.PLANNED,
        InjectEventKind.APPLIED,
        InjectEventKind.NOTE,
        InjectEventKind.REVERTED,
    ]
    assert events[2].message == "data-loss acts once: nothing to hold"
    assert stack.board.active() == {}


def test_inject_refuses_what_does_not_fit(target: LocalTarget) -> None:
    run_dir = stack_of(target).run_dir
    with pytest.raises(PlanError, match="unknown component"):
        inject(run_dir, Crash(), Selector(component="cache"), 1.0)
    with pytest.raises(FaultError, match="selects nothing"):
        inject(run_dir, ControlPlane(), Selector(region="ovhcloud/gra"), 1.0)


INJECTOR = textwrap.dedent(
    """
    import sys
    from pathlib import Path
    from bascule.faults import HttpError
    from bascule.model.selector import Selector
    from bascule.targets.local.inject import inject
    report = inject(Path(sys.argv[1]), HttpError(), Selector(component="llm", region="scaleway/fr-par"))
    print("interrupted" if report.interrupted else "ended", flush=True)
    """
)


def _start_injector(target: LocalTarget) -> subprocess.Popen[str]:
    stack = stack_of(target)
    proc = subprocess.Popen(
        [sys.executable, "-c", INJECTOR, str(stack.run_dir)], stdout=subprocess.PIPE, text=True
    )
    try:
        wait_for(lambda: any(k.startswith("inject-") for k in stack.board.active()), 15, "injected")
    except BaseException:
        proc.kill()
        proc.wait()
        raise
    return proc


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_inject_reverts_on_ctrl_c_and_sigterm(target: LocalTarget, sig: signal.Signals) -> None:
    stack = stack_of(target)
    proc = _start_injector(target)
    proc.send_signal(sig)
    out, _ = proc.communicate(timeout=15)
    assert proc.returncode == 0 and out.strip() == "interrupted"
    assert stack.board.active() == {}
    assert not [r for r in read_ledger(stack.ledger.path).active if r.key.startswith("inject-")]


def test_recover_reverts_what_a_killed_injector_left(target: LocalTarget) -> None:
    stack = stack_of(target)
    proc = _start_injector(target)
    proc.kill()
    proc.wait()
    (left,) = stack.board.active()
    report = recover(stack.run_dir)
    assert report.owner_alive and report.clean
    assert [(f.key, f.outcome) for f in report.faults] == [(left, "reverted")]
    assert stack.board.active() == {}
    assert recover(stack.run_dir).faults == ()
    control = stack.control
    assert control is not None
    with ControlClient(control.url, control.token) as client:
        assert client.faults() == {}
