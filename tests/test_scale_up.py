"""A pilot-light region on the local target: its reserve replicas stay parked until failover
traffic fills its gateways' slots, start after ``scale_up_delay`` — not while its control plane
is frozen — and then serve behind the region's routes, recorded in the ledger for recover."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from bascule.model.loading import parse_design
from bascule.stack.supervisor import ProcessState
from bascule.targets.local.ledger import LEDGER_FILE, read_ledger
from bascule.targets.local.scaler import ScaleEvent
from bascule.targets.local.stack import LocalStack

PAR = "scaleway/fr-par"
DESIGN = """
id: pilot-light-small
regions:
  - id: scaleway/fr-par
components:
  gateway:
    replicas: {scaleway/fr-par: {replicas: 1, max_replicas: 2, max_inflight: 2}}
  retriever: {replicas: {scaleway/fr-par: 1}}
  store: {replicas: {scaleway/fr-par: 1}}
  llm: {replicas: {scaleway/fr-par: 1}}
routing: {mode: pilot-light, scale_up_delay: 1s}
replication: {mode: none}
"""
RESERVE = "gateway-scaleway-fr-par-1"


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[LocalStack]:
    path = tmp_path / "design.yaml"
    path.write_text(DESIGN)
    started = LocalStack.start(parse_design(DESIGN), path, tmp_path / "run")
    try:
        yield started
    finally:
        started.stop()


def _hammer(url: str, users: int, seconds: float) -> list[int]:
    """`users` clients asking back to back for `seconds`; the statuses they got."""
    statuses: list[int] = []
    until = time.monotonic() + seconds

    def user() -> None:
        with httpx.Client(timeout=5.0, trust_env=False) as client:
            while time.monotonic() < until:
                body = {"question": "How are the floats moored?", "data_class": "internal"}
                statuses.append(client.post(url + "/v1/ask", json=body).status_code)

    threads = [threading.Thread(target=user) for _ in range(users)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return statuses


@pytest.mark.slow
def test_a_pilot_light_region_scales_up_on_overload_but_not_while_frozen(stack: LocalStack) -> None:
    assert stack.scaler is not None
    events: list[ScaleEvent] = []
    stack.scaler.subscribe(events.append)
    entry = stack.entries()[PAR]
    reserve = stack.supervisor.replica(RESERVE)
    assert reserve.state is ProcessState.PARKED and reserve.pid is None

    calm = _hammer(entry, users=1, seconds=2.0)
    assert calm and set(calm) == {200} and not events, "one user at a time fits in two slots"

    stack.supervisor.freeze(PAR)
    overloaded = _hammer(entry, users=6, seconds=4.0)
    assert 503 in overloaded and 200 in overloaded, "a full replica sheds the rest"
    assert [e.kind for e in events] == ["requested"] and events[0].replicas == (RESERVE,)
    time.sleep(1.5)  # past the delay: a frozen control plane starts nothing
    assert reserve.state is ProcessState.PARKED

    thawed = time.monotonic()
    stack.supervisor.thaw(PAR)
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline and not any(e.kind == "started" for e in events):
        time.sleep(0.05)
    assert [e.kind for e in events] == ["requested", "started"] and events[1].at >= thawed
    assert reserve.state is ProcessState.RUNNING and reserve.pid is not None
    route = next(r for r in stack.layout.ingress() if r.hop.target.region == PAR)
    assert len(stack.plane.routes()[route.name].upstreams) == 2, "the ingress route reaches both gateways"

    after = _hammer(entry, users=3, seconds=2.0)
    assert after.count(503) <= len(after) // 10, "four slots carry three users"
    recorded = [p for p in read_ledger(stack.run_dir / LEDGER_FILE).processes if p.name == RESERVE]
    assert [p.pid for p in recorded] == [reserve.pid], "bascule recover would find it"
