"""The journal records as the metrics read them (bascule.metrics.records): fields of the wrong kind
read as absent instead of failing the record, extra keys are ignored, nested dumps are typed."""

from __future__ import annotations

from bascule.metrics.records import (
    DataReport,
    FaultApplied,
    FaultReverted,
    RunEnded,
    RunStarted,
    SovereigntyViolation,
    parse_record,
)


def test_wrong_kinds_read_as_absent() -> None:
    applied = parse_record({"type": "fault-applied", "t": "soon", "phase": True, "cycle": 2.0}, FaultApplied)
    assert applied == FaultApplied(t=None, phase=None, cycle=None, kind=None)
    ended = parse_record({"t": 3, "exit_code": "1", "reason": 7, "elapsed": False, "new": [1]}, RunEnded)
    assert ended == RunEnded(t=3.0, exit_code=None, reason="7", elapsed=None)


def test_a_revert_keeps_its_key_and_rollback_flag() -> None:
    reverted = parse_record({"t": 1.5, "key": "p4.c2", "rollback": 1}, FaultReverted)
    assert reverted is not None and reverted.phase is None and reverted.key == "p4.c2" and reverted.rollback


def test_data_reports_keep_when_lost_writes_were_acknowledged() -> None:
    report = parse_record(
        {"probe": "canary", "acknowledged": 12.0, "lost": [["k1", 101.5], ["k2"], "k3", ["k4", "x"]]},
        DataReport,
    )
    assert report is not None and report.probe == "canary" and report.acknowledged == 12
    assert report.lost == (101.5,) and report.unverified == ()


def test_a_violation_without_a_hop_has_an_empty_one() -> None:
    violation = parse_record(
        {"t": 2.0, "source": "load", "hop": None, "level": "foreign"}, SovereigntyViolation
    )
    assert violation is not None and violation.hop.region == "" and violation.request_id is None


def test_run_started_types_the_plan_it_carries() -> None:
    started = parse_record(
        {
            "scenario": {"id": "s", "source": ["https://a", 3], "settle": "10"},
            "plan": {
                "phases": [{"index": 1, "touch": {"regions": ["aws/us-east-1"]}, "run_start_s": 2}, "junk"],
                "findings": [{"kind": "spof", "message": "m", "phase": "0"}, 5],
                "time": {"run_length_s": 60},
            },
        },
        RunStarted,
    )
    assert started is not None
    assert started.scenario.source == ("https://a", "3") and started.scenario.settle is None
    first, junk = started.plan.phases
    assert first.index == 1 and first.touch.regions == ("aws/us-east-1",) and first.run_start_s == 2.0
    assert junk.index is None and junk.kind == ""
    (finding,) = started.plan.findings
    assert finding.kind == "spof" and finding.phase is None
    assert started.plan.time.run_length_s == 60.0 and started.design == {}
