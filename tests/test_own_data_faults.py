"""identity, replication-pause, partition and data-loss on the user's own services: the design
fields that make them reachable (`kind: identity`, `replication: {primary}`, `wipe:` under a
command), what each fault does there, and the refusals that remain, each naming the field that
would lift it."""

from __future__ import annotations

import json
import socket
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from bascule.errors import ScenarioError
from bascule.faults import DataLoss, Fault, Identity, IdentityMode, Partition, ReplicationPause
from bascule.model.loading import parse_design
from bascule.model.selector import Selector
from bascule.model.topology import LinkPurpose, links
from bascule.plan.resolve import resolve
from bascule.stack.layout import layout, own_command
from bascule.stack.supervisor import ProcessSpec, ProcessState, Supervisor
from bascule.targets.local.effects import RouteFault, Wipe, compute_effects
from bascule.targets.local.faultstate import Blackhole, HttpError, Latency

PAR, GRA = "scaleway/fr-par", "ovhcloud/gra"


def design_text(db: dict[str, Any] | None = None, tokens: dict[str, Any] | None = None) -> str:
    components: dict[str, Any] = {
        "api": {
            "entry": True,
            "calls": ["db", "tokens"],
            "command": {"argv": ["api", "{port}", "{db.url}", "{tokens.url}"]},
            "replicas": {PAR: 1, GRA: 1},
        },
        "db": db
        or {
            "replication": {"primary": PAR},
            "command": {
                "argv": ["db", "{port}", "{replication.port}", "{data_dir}"],
                "wipe": {"argv": ["rm", "-rf", "{data_dir}/data"]},
            },
            "replicas": {PAR: 1, GRA: 1},
        },
        "tokens": tokens
        or {"kind": "identity", "command": {"argv": ["tokens", "{port}"]}, "replicas": {PAR: 1, GRA: 1}},
    }
    return json.dumps({"id": "own-data", "regions": [{"id": PAR}, {"id": GRA}], "components": components})


def effects_of(text: str, fault: Fault, selector: Selector) -> tuple[Any, ...]:
    design = parse_design(text, "d.yaml")
    touch, problems = resolve(design, fault, selector, ())
    assert not problems, problems
    return compute_effects(fault, touch, layout(design))


def problems_of(text: str, fault: Fault, selector: Selector) -> list[str]:
    design = parse_design(text, "d.yaml")
    return [message for _, message in resolve(design, fault, selector, ())[1]]


@pytest.mark.parametrize(
    ("fault", "state"),
    [
        (Identity(mode=IdentityMode.ERROR, statuses=(503,)), HttpError(statuses=(503,))),
        (Identity(mode=IdentityMode.SLOW, latency=0.4), Latency(fixed=0.4)),
        (Identity(mode=IdentityMode.TIMEOUT), Blackhole()),
    ],
)
def test_identity_acts_on_the_routes_to_an_own_token_service(fault: Identity, state: object) -> None:
    by_region = effects_of(design_text(), fault, Selector(region=PAR))
    assert by_region == (RouteFault("api@scaleway-fr-par->tokens@scaleway-fr-par", state),)  # type: ignore[arg-type]
    by_component = effects_of(design_text(), fault, Selector(component="tokens"))
    assert {e.route for e in by_component} == {
        "api@scaleway-fr-par->tokens@scaleway-fr-par",
        "api@ovhcloud-gra->tokens@ovhcloud-gra",
    }


def test_identity_reaches_a_token_service_that_already_runs() -> None:
    tokens = {
        "kind": "identity",
        "url": {PAR: "http://127.0.0.1:9", GRA: "http://127.0.0.1:10"},
        "replicas": {PAR: 1, GRA: 1},
    }
    effects = effects_of(
        design_text(tokens=tokens), Identity(mode=IdentityMode.TIMEOUT), Selector(region=GRA)
    )
    assert effects == (RouteFault("api@ovhcloud-gra->tokens@ovhcloud-gra", Blackhole()),)


def test_identity_on_a_component_that_is_no_token_service_says_how_to_declare_one() -> None:
    (message,) = problems_of(design_text(), Identity(), Selector(component="db"))
    assert "kind: identity" in message


def test_an_identity_component_needs_a_command_or_a_url() -> None:
    text = design_text(tokens={"kind": "identity", "replicas": {PAR: 1}})
    with pytest.raises(ScenarioError) as info:
        parse_design(text, "d.yaml")
    assert any("give it a command" in p.message for p in info.value.problems)


def test_a_standby_streams_from_its_primary_through_a_route_of_its_own(tmp_path: Path) -> None:
    design = parse_design(design_text(), "d.yaml")
    replicating = [h for h in links(design) if h.purpose is LinkPurpose.REPLICATE]
    assert [str(h) for h in replicating] == [f"db@{GRA} -> db@{PAR}"]
    stack = layout(design)
    ports = {route.name: 41000 + i for i, route in enumerate(stack.routes)}
    replica = {r.name: r for r in stack.replicas}
    standby = own_command(
        design,
        stack,
        replica["db-ovhcloud-gra-0"],
        port=40001,
        route_ports=ports,
        base_dir=str(tmp_path),
        data_dir="/run/d",
    )
    assert standby.argv == ("db", "40001", str(ports["db@ovhcloud-gra->db@scaleway-fr-par"]), "/run/d")
    assert standby.wipe is not None and standby.wipe.argv == ("rm", "-rf", "/run/d/data")
    primary = own_command(
        design,
        stack,
        replica["db-scaleway-fr-par-0"],
        port=40002,
        route_ports=ports,
        base_dir=str(tmp_path),
        data_dir="/run/p",
    )
    assert primary.argv[2] == "40002", "the primary is given its own address"


def test_replication_pause_and_partition_cut_the_replication_route() -> None:
    route = RouteFault("db@ovhcloud-gra->db@scaleway-fr-par", Blackhole())
    assert effects_of(design_text(), ReplicationPause(), Selector(region=GRA)) == (route,)
    assert effects_of(design_text(), ReplicationPause(), Selector(link=(PAR, GRA))) == (route,)
    assert effects_of(design_text(), ReplicationPause(), Selector(region=PAR)) == (), (
        "nothing replicates into the primary"
    )
    assert route in effects_of(design_text(), Partition(), Selector(link=(PAR, GRA)))


def test_replication_names_a_region_where_the_component_runs() -> None:
    db = {
        "replication": {"primary": "ovhcloud/rbx"},
        "command": {"argv": ["db"]},
        "replicas": {PAR: 1, GRA: 1},
    }
    with pytest.raises(ScenarioError) as info:
        parse_design(design_text(db=db), "d.yaml")
    assert any("not placed in ovhcloud/rbx" in p.message for p in info.value.problems)


def test_replication_placeholders_need_the_field() -> None:
    db = {"command": {"argv": ["db", "{replication.port}"]}, "replicas": {PAR: 1, GRA: 1}}
    with pytest.raises(ScenarioError) as info:
        parse_design(design_text(db=db), "d.yaml")
    assert any("unknown placeholder {replication.port}" in p.message for p in info.value.problems)


def test_data_loss_wipes_an_own_service_with_a_wipe_command() -> None:
    assert effects_of(design_text(), DataLoss(), Selector(component="db", region=GRA)) == (
        Wipe("db-ovhcloud-gra-0"),
    )


def test_data_loss_without_a_wipe_command_names_the_field() -> None:
    db = {"command": {"argv": ["db", "{port}"]}, "replicas": {PAR: 1, GRA: 1}}
    (message,) = problems_of(design_text(db=db), DataLoss(), Selector(component="db"))
    assert "wipe: {argv: [...]}" in message


SERVER = (
    "import socket, sys, time; s = socket.socket(); s.bind(('127.0.0.1', int(sys.argv[1]))); "
    "s.listen(); time.sleep(60)"
)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def test_a_wipe_runs_while_the_replica_is_down_and_it_restarts(tmp_path: Path) -> None:
    supervisor = Supervisor(tmp_path / "logs")
    port = free_port()
    spec = ProcessSpec(
        "db-0", (sys.executable, "-c", SERVER, str(port)), ready_path=None, port=port, restart_delay=0.2
    )
    try:
        supervisor.start([spec], timeout=20)
        supervisor.wait_ready(["db-0"], timeout=20)
        before = supervisor.replica("db-0").process
        assert before is not None
        seen: list[int | None] = []
        supervisor.while_down("db-0", lambda: seen.append(before.returncode))
        assert seen and seen[0] is not None, "the action ran once the replica had exited"
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            replica = supervisor.replica("db-0")
            if replica.process is not before and replica.state is ProcessState.RUNNING:
                break
            time.sleep(0.05)
        else:
            pytest.fail("the replica did not restart after its wipe")
    finally:
        supervisor.stop(timeout=3)


def test_a_wipe_command_writes_to_the_replica_log_and_its_failure_fails_the_fault(tmp_path: Path) -> None:
    from bascule.errors import FaultError
    from bascule.stack.layout import OwnWipe
    from bascule.targets.local.board import _run_wipe

    log = tmp_path / "db.log"
    ok = OwnWipe((sys.executable, "-c", "print('wiped it')"), {}, str(tmp_path), 10.0)
    _run_wipe("db-0", ok, log)
    assert "data-loss: running" in log.read_text() and "wiped it" in log.read_text()
    failing = OwnWipe((sys.executable, "-c", "import sys; sys.exit(3)"), {}, str(tmp_path), 10.0)
    with pytest.raises(FaultError, match="exited 3"):
        _run_wipe("db-0", failing, log)
    slow = OwnWipe((sys.executable, "-c", "import time; time.sleep(30)"), {}, str(tmp_path), 0.5)
    with pytest.raises(FaultError, match="failed"):
        _run_wipe("db-0", slow, log)


def test_a_data_loss_takes_effect_when_its_replica_stops_not_once_its_wipe_is_done(tmp_path: Path) -> None:
    """A new user's wipe took 0.3 s: the fault was journaled at its end, and the outage that began
    with the stop was blamed on the phase before (RTO 8.7 s where it was 2.7 s)."""
    from bascule.stack.layout import OwnWipe
    from bascule.targets.local.board import FaultBoard
    from bascule.targets.local.dns import DnsServer
    from bascule.targets.local.proxy import FaultPlane

    supervisor = Supervisor(tmp_path / "logs")
    port = free_port()
    spec = ProcessSpec(
        "db-0", (sys.executable, "-c", SERVER, str(port)), ready_path=None, port=port, restart_delay=0.2
    )
    slow_wipe = OwnWipe((sys.executable, "-c", "import time; time.sleep(0.4)"), {}, str(tmp_path), 10.0)
    board = FaultBoard(FaultPlane(), DnsServer(), supervisor, wipes={"db-0": slow_wipe})
    try:
        supervisor.start([spec], timeout=20)
        supervisor.wait_ready(["db-0"], timeout=20)
        called = time.monotonic()
        board.apply("loss", [Wipe("db-0")])
        returned = time.monotonic()
        stopped = board.stopped_at("loss")
        assert stopped is not None and called <= stopped < returned - 0.35
        board.revert("loss")
        assert board.stopped_at("loss") is None
    finally:
        supervisor.stop(timeout=3)
