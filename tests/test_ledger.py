"""The undo ledger (`bascule.targets.local.ledger`): records, parsing, fsync, concurrent appends."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bascule.errors import TargetError
from bascule.targets.local import ledger as ledger_module
from bascule.targets.local.effects import (
    DnsFault,
    Effect,
    Freeze,
    Kill,
    Pause,
    ResetConnections,
    RouteFault,
    Wipe,
    dump_effect,
    parse_effect,
)
from bascule.targets.local.faultstate import (
    Blackhole,
    DnsFaultMode,
    HttpError,
    Latency,
    Refuse,
    Throttle,
)
from bascule.targets.local.ledger import (
    LEDGER_FILE,
    ClosedRecord,
    FaultRecord,
    Ledger,
    Owner,
    PortRecord,
    ProcessRecord,
    RecoveredRecord,
    RevertedRecord,
    RunRecord,
    dump_record,
    parse_ledger,
    parse_record,
    read_ledger,
)

ME = Owner(100, 5000)
OTHER = Owner(200, 6000)

EFFECTS: list[Effect] = [
    RouteFault("clients->gateway@aws-us-east-1", Blackhole(new_connections_only=True)),
    RouteFault("a->b", Refuse()),
    RouteFault("a->c", Latency(fixed=0.2, jitter=0.05)),
    RouteFault("a->d", HttpError(statuses=(500, 503), ratio=0.5)),
    RouteFault("a->e", Throttle(retry_after=2.0)),
    DnsFault("store.aws-us-east-1.bascule.internal", DnsFaultMode.NODATA),
    ResetConnections("a->b"),
    Freeze("aws/us-east-1"),
    Pause("store-aws-us-east-1-0"),
    Kill("gateway-aws-us-east-1-1", 0.5),
    Wipe("store-scaleway-fr-par-0"),
]


def fault(key: str, *effects: Effect, by: Owner = ME) -> FaultRecord:
    return FaultRecord(key, "blackhole", 0, None, tuple(effects), by, 1.0)


def test_every_record_survives_a_round_trip() -> None:
    records = [
        RunRecord(ME, "m" * 32, "active-passive-sovereign", 1.5),
        ProcessRecord("store-aws-us-east-1-0", 4242, 981234, 2.0),
        PortRecord("udp", 5353, "dns", 2.5),
        FaultRecord("run-1/p0.c3", "flap", 0, 3, tuple(EFFECTS), OTHER, 3.0),
        RevertedRecord("run-1/p0.c3", OTHER, 4.0, note="closing"),
        ClosedRecord(5.0),
        RecoveredRecord(6.0, "2 fault(s)"),
    ]
    for record in records:
        line = dump_record(record)
        assert "\n" not in line
        assert parse_record(line) == record


@given(st.sampled_from(EFFECTS))
def test_effects_round_trip(effect: Effect) -> None:
    assert parse_effect(dump_effect(effect)) == effect


@pytest.mark.parametrize(
    "data",
    [
        {"op": "explode"},
        {"op": "route", "route": "a"},
        {"op": "route", "route": "", "state": {"mode": "pass"}},
        {"op": "dns", "host": "x", "mode": "lost"},
        {"op": "kill", "replica": "x", "restart_after": -1},
        {"op": "kill", "replica": "x", "restart_after": True},
    ],
)
def test_malformed_effects_are_refused(data: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        parse_effect(data)


def test_active_faults_are_those_applied_and_not_reverted() -> None:
    text = "\n".join(
        dump_record(r)
        for r in [
            RunRecord(ME, "marker", "d", 0.0),
            fault("k1", Freeze("r")),
            fault("k2", Pause("p")),
            RevertedRecord("k1", ME, 2.0),
            fault("k3", Wipe("s"), by=OTHER),
            ProcessRecord("a", 10, 1, 0.0),
            ProcessRecord("a", 10, 1, 0.5),
            ProcessRecord("a", 11, 2, 0.5),
            PortRecord("tcp", 8000, "route", 0.0),
            PortRecord("tcp", 8000, "route", 0.0),
            PortRecord("udp", 8000, "dns", 0.0),
        ]
    )
    state = parse_ledger(text)
    assert state.run is not None and state.run.marker == "marker"
    assert [r.key for r in state.applied] == ["k1", "k2", "k3"]
    assert [r.key for r in state.active] == ["k2", "k3"]
    assert state.active[1].by == OTHER
    assert [(p.pid, p.start_time) for p in state.processes] == [(10, 1), (11, 2)]
    assert [(p.proto, p.port) for p in state.ports] == [("tcp", 8000), ("udp", 8000)]
    assert not state.finished and state.damaged == 0


def test_closed_and_recovered_end_a_run() -> None:
    base = [dump_record(RunRecord(ME, "m", "d", 0.0))]
    assert parse_ledger("\n".join([*base, dump_record(ClosedRecord(1.0))])).closed
    recovered = parse_ledger("\n".join([*base, dump_record(RecoveredRecord(1.0))]))
    assert recovered.recovered and recovered.finished and not recovered.closed


def test_a_torn_last_line_is_counted_and_ignored() -> None:
    whole = dump_record(fault("k1", Freeze("r")))
    torn = dump_record(fault("k2", Freeze("r")))[:40]
    state = parse_ledger("\n".join([dump_record(RunRecord(ME, "m", "d", 0.0)), whole, torn]))
    assert [r.key for r in state.active] == ["k1"]
    assert state.damaged == 1


def test_create_appends_fsynced_records_in_a_private_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    synced: list[int] = []
    real_fsync = os.fsync

    def counting_fsync(fd: int) -> None:
        synced.append(fd)
        real_fsync(fd)

    monkeypatch.setattr(ledger_module.os, "fsync", counting_fsync)
    path = tmp_path / LEDGER_FILE
    with Ledger.create(path, design="d", marker="m") as ledger:
        before = len(synced)
        ledger.append(fault("k1", Pause("p")))
        assert len(synced) == before + 1
        # Written and synced before append returned: a reader sees it at once.
        assert [r.key for r in read_ledger(path).active] == ["k1"]
    assert (path.stat().st_mode & 0o777) == 0o600
    state = read_ledger(path)
    assert state.run is not None and state.run.owner == Owner.me()
    with pytest.raises(ValueError, match="closed"):
        ledger.append(ClosedRecord(1.0))


def test_create_refuses_over_a_run_that_did_not_end(tmp_path: Path) -> None:
    path = tmp_path / LEDGER_FILE
    with Ledger.create(path, design="d", marker="m"):
        pass
    # This process owns that run and is alive.
    with pytest.raises(TargetError, match="still using"):
        Ledger.create(path, design="d", marker="m2")
    path.write_text(dump_record(RunRecord(Owner(os.getpid(), 1), "m", "d", 0.0)) + "\n")
    with pytest.raises(TargetError, match="bascule recover"):
        Ledger.create(path, design="d", marker="m2")
    with Ledger.open(path) as ledger:
        ledger.append(RecoveredRecord(1.0))
    with Ledger.create(path, design="d2", marker="m3"):
        pass
    state = read_ledger(path)
    assert state.run is not None and state.run.marker == "m3" and not state.finished


def test_open_needs_an_existing_ledger(tmp_path: Path) -> None:
    with pytest.raises(TargetError, match="no undo ledger"):
        Ledger.open(tmp_path / LEDGER_FILE)
    with pytest.raises(TargetError, match="no undo ledger"):
        read_ledger(tmp_path / LEDGER_FILE)


def test_two_processes_appending_never_interleave_lines(tmp_path: Path) -> None:
    path = tmp_path / LEDGER_FILE
    with Ledger.create(path, design="d", marker="m"):
        pass
    writer = textwrap.dedent(
        f"""
        import sys
        from pathlib import Path
        from bascule.targets.local.effects import RouteFault
        from bascule.targets.local.faultstate import Blackhole
        from bascule.targets.local.ledger import FaultRecord, Ledger, Owner
        name = sys.argv[1]
        effects = tuple(RouteFault(f"route-{{i}}-" + "x" * 200, Blackhole()) for i in range(20))
        with Ledger.open(Path({str(path)!r})) as ledger:
            for i in range(150):
                ledger.append(FaultRecord(f"{{name}}/{{i}}", "blackhole", i, None, effects,
                                          Owner.me(), 0.0))
        """
    )
    procs = [subprocess.Popen([sys.executable, "-c", writer, name]) for name in ("a", "b")]
    try:
        for proc in procs:
            assert proc.wait(timeout=60) == 0
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
    state = read_ledger(path)
    assert state.damaged == 0
    assert len(state.active) == 300
    assert {r.key.split("/")[0] for r in state.active} == {"a", "b"}


def test_an_injection_stops_waiting_once_its_stack_has_stopped(tmp_path: Path) -> None:
    """`bascule inject` with no duration waits for Ctrl-C — or for its stack to stop: its faults
    then ended with it (seen in a user's trial: it waited 15 minutes, its stack long gone)."""
    from bascule.targets.local import inject as inject_module

    with Ledger.create(tmp_path / LEDGER_FILE, design="d", marker="m") as ledger:
        ledger.append(ClosedRecord(time.time()))  # the stack ran, and stopped
    started = time.monotonic()
    with pytest.raises(inject_module._StackGoneError):
        inject_module._wait_until(started + 30.0, None, tmp_path)
    assert time.monotonic() - started < 3.0
