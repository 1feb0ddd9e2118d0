"""The score: exactly DESIGN.md's formula (docs/scoring.md), its worked example, the sovereignty cap,
weights, unmeasured dimensions, recommendations, and the result document built from it."""

from __future__ import annotations

import json
from dataclasses import replace
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from journal_factory import (
    PRIMARY,
    STANDBY,
    JournalSpec,
    Served,
    build_records,
    one_phase_scenario,
    reference_design,
)

from bascule.metrics import Correctness, Latency, Metrics, Outage, Rpo, compute_metrics
from bascule.model.design import Design
from bascule.model.scenario import DIMENSIONS, Objectives, Weights
from bascule.reports.model import dump_result
from bascule.reports.result import RESULT_SCHEMA, build_result
from bascule.score import (
    Grade,
    grade,
    score,
    sub_availability,
    sub_correctness,
    sub_durability,
    sub_within,
)

AWS_OBJECTIVES = Objectives(availability=0.99, rto=15, latency_p95=1.5, rpo=0, sovereignty_violations=0)


def healthy(t: float, source: str, data_class: str) -> Served:
    return Served(True, STANDBY if data_class == "confidential" else PRIMARY, correct=True)


_BASE: dict[str, Metrics] = {}


def base_metrics() -> Metrics:
    if "m" not in _BASE:
        spec = JournalSpec(reference_design(), one_phase_scenario(), healthy, length=30.0)
        _BASE["m"] = compute_metrics(build_records(spec))
    return _BASE["m"]


def example_metrics(violations: int = 0, graded: bool = True) -> Metrics:
    """docs/scoring.md's worked example."""
    m = base_metrics()
    return replace(
        m,
        objectives=AWS_OBJECTIVES,
        requests=2000,
        failed=30,
        success_ratio=0.985,
        rto=21.0,
        recovered=True,
        outages=(Outage(start=0.2, end=21.0, cause=0.0, phases=(0,)),),
        latency=Latency(0.3, 1.2, 2.0),
        correctness=Correctness(1.0, 0.9 if graded else None, 400 if graded else 0, 100),
        rpo=Rpo(120, 2, 0, 0.5, 10.0, 10.5, 0.5, 1.0),
        sovereignty_violations=violations,
        violating_requests=violations,
        violations_by_hop=(("confidential", "llm", PRIMARY, "foreign", violations),) if violations else (),
    )


# -- the worked example ------------------------------------------------------------------------------


def test_worked_example() -> None:
    s = score(example_metrics(), AWS_OBJECTIVES, Weights())
    subs = {d.name: d.sub_score for d in s.dimensions}
    assert subs == {
        "availability": 95.0,
        "recovery": 86.67,
        "latency": 100.0,
        "correctness": 90.0,
        "durability": 0.0,
        "sovereignty": 100.0,
    }
    assert s.overall == 84.6 and s.grade is Grade.B and s.cap is None and s.passed is False
    failing = {d.name for d in s.dimensions if d.passed is False}
    assert failing == {"availability", "recovery", "correctness", "durability"}

    capped = score(example_metrics(violations=3), AWS_OBJECTIVES, Weights())
    assert capped.overall == 50.0 and capped.grade is Grade.D
    assert capped.cap is not None and capped.cap.at == 50 and capped.cap.reason == "3 sovereignty violations"

    weighted = score(
        example_metrics(),
        AWS_OBJECTIVES,
        Weights(availability=50, recovery=10, latency=10, correctness=10, durability=10, sovereignty=10),
    )
    assert weighted.overall == 85.2 and weighted.grade is Grade.B

    ungraded = score(example_metrics(graded=False), AWS_OBJECTIVES, Weights())
    assert ungraded.overall == 83.6 and ungraded.grade is Grade.B and ungraded.passed is False
    assert ungraded.unmeasured == ("correctness",)


def test_correctness_with_nothing_right_before_the_fault_is_unmeasured_not_passed() -> None:
    """A service of one's own sent the golden set's questions answers none of them right: 0 %
    during the fault against 0 % before it is no pass (seen in a user's trial: 100/100)."""
    m = replace(example_metrics(), correctness=Correctness(0.0, 0.0, 8644, 300))
    (dim,) = (d for d in score(m, AWS_OBJECTIVES, Weights()).dimensions if d.name == "correctness")
    assert dim.passed is None and dim.sub_score is None
    assert "none of the 300 golden answers graded before the first fault" in dim.explanation
    assert "load.requests.questions" in (dim.recommendation or "")
    # An objective of the user's own is still a target to judge against.
    graded = score(m, AWS_OBJECTIVES.model_copy(update={"correctness": 0.5}), Weights()).dimensions
    (judged,) = (d for d in graded if d.name == "correctness")
    assert judged.passed is False and judged.sub_score == 0.0


# -- the formula ------------------------------------------------------------------------------------


@given(st.floats(min_value=0.5, max_value=1.0), st.floats(min_value=0.0, max_value=1.0))
def test_availability_is_linear_over_ten_points(objective: float, measured: float) -> None:
    sub = sub_availability(measured, objective)
    if measured >= objective:
        assert sub == 100.0
    elif measured <= objective - 0.10:
        assert sub == 0.0
    else:
        assert sub == pytest.approx(100 * (measured - objective + 0.10) / 0.10)
    assert sub_availability(objective - 0.05, objective) == pytest.approx(50.0)


@given(st.floats(min_value=0.1, max_value=100.0), st.floats(min_value=0.0, max_value=500.0))
def test_rto_and_latency_reach_zero_at_four_times_the_objective(objective: float, measured: float) -> None:
    sub = sub_within(measured, objective)
    assert 0.0 <= sub <= 100.0
    if measured <= objective:
        assert sub == 100.0
    elif measured >= 4 * objective:
        assert sub == 0.0
    else:
        assert sub == pytest.approx(100 * (4 * objective - measured) / (3 * objective))
    assert sub_within(2.5 * objective, objective) == pytest.approx(50.0)


def test_correctness_and_durability_points() -> None:
    assert sub_correctness(1.0, 0.95) == 100.0
    assert sub_correctness(0.0, 0.95) == 0.0
    assert sub_correctness(0.475, 0.95) == pytest.approx(50.0)
    assert sub_durability(0, 0.0, 0.0) == 100.0
    assert sub_durability(1, 0.5, 0.0) == 0.0
    assert sub_durability(3, 10.0, 5.0) == pytest.approx(50.0)
    assert sub_durability(3, 20.0, 5.0) == 0.0


@pytest.mark.parametrize(
    ("overall", "letter"),
    [(100, "A"), (90, "A"), (89.9, "B"), (75, "B"), (74.9, "C"), (60, "C"), (40, "D"), (39.9, "F"), (0, "F")],
)
def test_grades(overall: float, letter: str) -> None:
    assert grade(overall) is Grade(letter)


dimension_weights = st.fixed_dictionaries(
    {d: st.floats(min_value=0, max_value=100) for d in DIMENSIONS}
).filter(lambda w: sum(w.values()) > 1)


def figures(draw: Any) -> Metrics:
    m = example_metrics()
    return replace(
        m,
        success_ratio=draw(st.floats(min_value=0.8, max_value=1.0)),
        rto=draw(st.floats(min_value=0.0, max_value=80.0)),
        latency=Latency(0.1, draw(st.floats(min_value=0.01, max_value=8.0)), 1.0),
        correctness=Correctness(1.0, draw(st.floats(min_value=0.0, max_value=1.0)), 100, 100),
        rpo=Rpo(100, 0, 0, None, None, None, 0.5, 0.0),
    )


@settings(max_examples=60, deadline=None)
@given(st.data(), dimension_weights)
def test_weights_change_the_overall_as_the_formula_says(
    data: st.DataObject, weights: dict[str, float]
) -> None:
    m = figures(data.draw)
    s = score(m, AWS_OBJECTIVES, Weights(**weights))
    subs = {d.name: d.sub_score for d in s.dimensions}
    assert all(v is not None for v in subs.values())
    raw = score(m, AWS_OBJECTIVES, Weights()).dimensions
    exact = {d.name: d.sub_score for d in raw}
    expected = sum(weights[d] * (exact[d] or 0.0) for d in DIMENSIONS) / sum(weights.values())
    assert s.overall == pytest.approx(round(expected, 1), abs=0.051)
    # Scaling every weight leaves the overall alone.
    doubled = score(m, AWS_OBJECTIVES, Weights(**{k: 2 * v for k, v in weights.items()}))
    assert doubled.overall == pytest.approx(s.overall, abs=0.051)
    # More weight on the best dimension never lowers the overall.
    best = max(DIMENSIONS, key=lambda d: exact[d] or 0.0)
    heavier = score(m, AWS_OBJECTIVES, Weights(**{**weights, best: weights[best] + 50}))
    assert heavier.overall is not None and s.overall is not None
    assert heavier.overall >= s.overall - 0.051


@settings(max_examples=40, deadline=None)
@given(st.data(), dimension_weights, st.integers(min_value=1, max_value=1000))
def test_any_sovereignty_violation_caps_the_overall_at_50(
    data: st.DataObject, weights: dict[str, float], violations: int
) -> None:
    m = replace(
        figures(data.draw),
        sovereignty_violations=violations,
        violations_by_hop=(("confidential", "retriever", PRIMARY, "foreign", violations),),
    )
    s = score(m, AWS_OBJECTIVES, Weights(**weights))
    sovereignty = next(d for d in s.dimensions if d.name == "sovereignty")
    assert sovereignty.sub_score == 0.0 and sovereignty.passed is False
    assert s.overall is not None and s.overall <= 50.0
    assert s.cap is not None and s.cap.at == 50.0 and s.passed is False
    assert sovereignty.recommendation and PRIMARY in sovereignty.recommendation


def test_a_perfect_run_scores_100_and_passes() -> None:
    s = score(base_metrics(), base_metrics().objectives, Weights())
    assert s.overall == 100.0 and s.grade is Grade.A and s.passed
    assert all(d.recommendation is None for d in s.dimensions)


def test_an_interrupted_run_is_not_scored_and_a_guardrail_abort_never_passes() -> None:
    perfect = base_metrics()
    interrupted = replace(perfect, run=replace(perfect.run, exit_code=3, reason="interrupted by SIGINT"))
    s = score(interrupted, perfect.objectives, Weights())
    assert s.overall is None and s.grade is None and s.passed is False
    assert all(
        d.explanation.startswith("Not measured: the run was interrupted before its plan ended")
        for d in s.dimensions
    )
    stopped = replace(
        perfect, run=replace(perfect.run, exit_code=3, reason="guardrail probe: probe 'slo' failing")
    )
    s = score(stopped, perfect.objectives, Weights())
    assert s.overall == 100.0 and s.passed is False


def test_a_run_stopped_before_its_plan_keeps_the_sovereignty_violations_it_saw() -> None:
    """Not scored, yet not silent: 12 confidential requests that left their jurisdiction before the
    first fault are a failed sovereignty, not 'not measured'."""
    seen = example_metrics(violations=12)
    stopped = replace(
        seen,
        run=replace(seen.run, plan_start=None, exit_code=3, reason="guardrail sovereignty-violations"),
    )
    s = score(stopped, AWS_OBJECTIVES, Weights())
    assert s.overall is None and s.passed is False
    sovereignty = next(d for d in s.dimensions if d.name == "sovereignty")
    assert sovereignty.measured == 12 and sovereignty.passed is False
    assert set(s.unmeasured) == set(DIMENSIONS) - {"sovereignty"}


def test_writes_lost_long_before_the_faults_are_not_blamed_on_replication_lag() -> None:
    """Lost writes acknowledged well before the first fault had been shipped: replication's lag
    cannot explain them (a store that restarted empty and re-synced its replica, in a user's trial
    on Redis), and the advice says so instead of asking for synchronous replication."""
    m = example_metrics()
    start = min(p.actual_start for p in m.phases if p.actual_start is not None)
    durability = next(d for d in score(m, AWS_OBJECTIVES, Weights()).dimensions if d.name == "durability")
    assert durability.recommendation is not None and "Writes acknowledged" not in durability.recommendation
    early = replace(m, rpo=replace(m.rpo, first_lost=start - 5.1)) if m.rpo is not None else m
    durability = next(d for d in score(early, AWS_OBJECTIVES, Weights()).dimensions if d.name == "durability")
    assert durability.recommendation is not None
    assert durability.recommendation.startswith(
        "Writes acknowledged 5.10 s before the first fault were lost too"
    )
    assert "synchronous" not in durability.recommendation.lower()


# -- what could not be measured ------------------------------------------------------------------------


def test_unmeasured_dimensions_are_said_so_and_left_out() -> None:
    m = replace(
        base_metrics(), rpo=None, notes={**base_metrics().notes, "rpo": "no data-report in the journal"}
    )
    s = score(m, m.objectives, Weights())
    durability = next(d for d in s.dimensions if d.name == "durability")
    assert durability.sub_score is None and durability.passed is None and durability.measured is None
    assert durability.explanation == "Not measured: no data-report in the journal."
    assert durability.recommendation
    assert s.overall == 100.0 and s.passed is False and s.unmeasured == ("durability",)
    # Left out on purpose: a weight of 0.
    s0 = score(m, m.objectives, Weights(durability=0))
    assert (
        s0.passed is True and next(d for d in s0.dimensions if d.name == "durability").recommendation is None
    )


def test_nothing_measured_has_no_overall() -> None:
    m = compute_metrics([])
    s = score(m, m.objectives, m.weights)
    assert s.overall is None and s.grade is None and s.passed is False
    assert set(s.unmeasured) == set(DIMENSIONS)


def test_never_recovered_scores_zero() -> None:
    m = replace(base_metrics(), rto=None, recovered=False)
    recovery = next(d for d in score(m, m.objectives, Weights()).dimensions if d.name == "recovery")
    assert recovery.sub_score == 0.0 and recovery.passed is False and "never got back" in recovery.explanation


def test_the_correctness_baseline_is_the_run_unless_the_objective_sets_it() -> None:
    m = replace(base_metrics(), correctness=Correctness(0.8, 0.8, 100, 100))
    own = next(d for d in score(m, m.objectives, Weights()).dimensions if d.name == "correctness")
    assert own.sub_score == 100.0 and own.objective == 0.8
    fixed = next(
        d for d in score(m, Objectives(correctness=0.9), Weights()).dimensions if d.name == "correctness"
    )
    assert fixed.sub_score == pytest.approx(100 * 0.8 / 0.9, abs=0.01) and fixed.passed is False


# -- explanations and recommendations ----------------------------------------------------------------


def _pilot_light() -> Design:
    data = reference_design().model_dump(mode="json")
    for component in ("gateway", "retriever", "llm", "store"):
        placement = data["components"][component]["replicas"][STANDBY]
        placement["max_replicas"] = placement["replicas"] + 2
    data["components"]["gateway"]["replicas"][STANDBY]["max_inflight"] = 8
    data["routing"]["mode"] = "pilot-light"
    return Design.model_validate(data)


def _half_failing(t: float, source: str, data_class: str) -> Served:
    # The primary is lost at 0 s; the standby is too small, so half the internal traffic fails
    # for 40 s.
    if data_class == "internal" and 0.0 <= t < 40.0 and int(t * 10) % 2 == 0:
        return Served(False)
    return Served(True, STANDBY, correct=True)


@pytest.mark.parametrize(
    ("frozen", "advice"),
    [
        (
            {"region": STANDBY},
            "the standby could not scale while the control plane was frozen: run it at full size",
        ),
        (None, "the pilot-light standby had to scale up before it could take all the traffic"),
    ],
)
def test_rto_missed_by_a_pilot_light_says_whether_its_own_control_plane_was_frozen(
    frozen: dict[str, str] | None, advice: str
) -> None:
    # Only a freeze of the standby's own region keeps it from scaling; a freeze of the primary
    # (the default target) does not, and the advice must not claim it did.
    scenario = one_phase_scenario(kind="control-plane", target=frozen, length=40.0, objectives={"rto": 10})
    m = compute_metrics(build_records(JournalSpec(_pilot_light(), scenario, _half_failing, length=60.0)))
    s = score(m, m.objectives, m.weights)
    recovery = next(d for d in s.dimensions if d.name == "recovery")
    assert recovery.passed is False and recovery.measured is not None and recovery.measured > 30
    assert recovery.recommendation is not None
    assert advice in recovery.recommendation
    assert STANDBY in recovery.recommendation


@pytest.mark.parametrize(
    ("fault", "says", "never"),
    [
        (
            {"kind": "dns", "answer": "nxdomain", "new_connections_only": False},
            "fail over on resolution errors too",
            "pooled connections kept working",  # untrue here: the fault reset them
        ),
        (
            {"kind": "crash", "restart_after": 3},
            "came back with its data",
            "refused connections should",  # a restarted process may answer, and wrongly
        ),
    ],
)
def test_the_advice_for_a_phase_claims_nothing_the_run_did_not_show(
    fault: dict[str, Any], says: str, never: str
) -> None:
    target = {"component": "store", "region": PRIMARY} if fault["kind"] == "crash" else None
    scenario = one_phase_scenario(fault=fault, target=target, length=40.0, objectives={"rto": 10})
    m = compute_metrics(build_records(JournalSpec(_pilot_light(), scenario, _half_failing, length=60.0)))
    recovery = next(d for d in score(m, m.objectives, m.weights).dimensions if d.name == "recovery")
    assert recovery.recommendation is not None and says in recovery.recommendation
    assert never not in recovery.recommendation


def test_a_class_with_nowhere_to_fail_over_is_named_from_the_plan() -> None:
    scenario = one_phase_scenario(target={"region": STANDBY}, length=10.0, name="fr-par down")

    def world(t: float, source: str, data_class: str) -> Served:
        if data_class == "confidential" and 0.0 <= t < 10.0:
            return Served(False)
        return healthy(t, source, data_class)

    m = compute_metrics(build_records(JournalSpec(reference_design(), scenario, world, length=30.0)))
    availability = next(d for d in score(m, m.objectives, m.weights).dimensions if d.name == "availability")
    assert availability.passed is False and availability.recommendation is not None
    assert availability.recommendation == (
        "During 'fr-par down' every region allowed to serve 'confidential' is impaired (scaleway/fr-par) "
        "— add a region allowed for that data class."
    )


def test_recommendations_name_the_phase_and_the_design() -> None:
    s = score(example_metrics(), AWS_OBJECTIVES, Weights())
    by_name = {d.name: d for d in s.dimensions}
    assert "asynchronous with 1.00 s of lag" in (by_name["durability"].recommendation or "")
    assert "mistral-small-latest instead of mistral-large-latest" in (
        by_name["correctness"].recommendation or ""
    )
    assert by_name["latency"].recommendation is None
    assert by_name["availability"].explanation == (
        "98.5 % of 2000 requests succeeded during the impact window (30 failed); the objective is 99 %."
    )
    for d in s.dimensions:
        assert d.explanation.endswith(".") and d.explanation.count(". ") == 0


def test_failover_advice_for_a_design_entered_through_its_own_proxy_names_the_proxy() -> None:
    """A new user's Caddy did the failover; the advice spoke of "3.00 s of health checks and 5.00 s
    request timeouts", the design's routing — which paces only bascule's clients in front of it."""
    from bascule.score.advice import phase_advice

    m = example_metrics()
    phase = (
        next(p for p in m.phases if p.kind == "region-outage")
        if any(p.kind == "region-outage" for p in m.phases)
        else replace(m.phases[0], kind="region-outage")
    )
    reference = phase_advice(m, phase)
    assert "health checks" in reference and "request timeouts" in reference
    own = phase_advice(replace(m, design=replace(m.design, own_entry="caddy")), phase)
    assert own.startswith("fail over sooner in caddy, the design's entry, whose own settings pace it")
    assert "pace only bascule's clients" in own


# -- the result document ------------------------------------------------------------------------------


def test_result_document_follows_the_schema() -> None:
    def failover(t: float, source: str, data_class: str) -> Served:
        if data_class == "internal" and 0.0 <= t < 3.0:
            return Served(False)
        if data_class == "internal" and t < 17.0:
            return Served(True, STANDBY, latency=0.3, correct=True)
        return healthy(t, source, data_class)

    spec = JournalSpec(reference_design(), one_phase_scenario(), failover, length=40.0, lost=(1.0,))
    m = compute_metrics(build_records(spec))
    doc = json.loads(dump_result(build_result(m, score(m, m.objectives, m.weights), run_dir="runs/x")))
    json.dumps(doc, allow_nan=False)
    assert doc["schema"] == RESULT_SCHEMA == "bascule.result/1"
    assert set(doc) == {
        "schema",
        "run",
        "score",
        "figures",
        "phases",
        "series",
        "violations",
        "findings",
        "events",
        "discovered",
    }
    assert doc["discovered"] == []
    assert doc["run"]["dir"] == "runs/x" and doc["run"]["hypothesis"] == {"before": True, "after": True}
    assert (
        doc["run"]["scenario"]["id"] == "synthetic"
        and doc["run"]["design"]["id"] == "active-passive-sovereign"
    )
    assert [r["sovereignty"] for r in doc["run"]["design"]["regions"]] == ["foreign", "sovereign"]
    assert [d["name"] for d in doc["score"]["dimensions"]] == list(DIMENSIONS)
    for d in doc["score"]["dimensions"]:
        assert set(d) == {
            "name",
            "weight",
            "measured",
            "objective",
            "unit",
            "sub_score",
            "passed",
            "explanation",
            "recommendation",
        }
        assert d["unit"] in ("ratio", "s", "count")
    f = doc["figures"]
    for key in (
        "impact_window",
        "requests",
        "failed",
        "success_ratio",
        "success_ratio_baseline",
        "latency",
        "time_to_detect",
        "time_to_failover",
        "rto",
        "recovered",
        "failback",
        "rpo",
        "sovereignty_violations",
        "correctness",
        "error_budget",
        "cost",
    ):
        assert key in f
    assert f["impact_window"] == [0.0, 22.0]
    assert f["rpo"]["lost"] == 1 and f["rpo"]["window"] == 0.0 and f["rpo"]["seconds"] > 0
    assert set(f["latency"]) == {"p50", "p95", "p99"}
    assert set(f["cost"]) == {"currency", "steady_per_hour", "failover_extra"}
    phase = doc["phases"][0]
    assert phase["kind"] == "region-outage" and phase["planned_end"] == 12.0 and phase["actual_end"] == 12.0
    assert phase["share"] == {STANDBY: 1.0}
    series = doc["series"]
    n = len(series["t"])
    assert all(len(series[k]) == n for k in ("requests", "success_ratio", "p50", "p95", "p99", "length"))
    for group in ("share_region", "share_level", "share_provider"):
        assert all(len(v) == n for v in series[group].values())
    assert [e["t"] for e in doc["events"]] == sorted(e["t"] for e in doc["events"])
    assert doc["findings"] and all(isinstance(x, str) for x in doc["findings"])


def test_wrong_answers_after_a_store_is_wiped_blame_the_wipe_not_the_model() -> None:
    scenario = one_phase_scenario(
        kind="data-loss",
        target={"component": "store", "region": STANDBY},
        length=10.0,
        objectives={"correctness": 0.95},
    )

    def world(t: float, source: str, data_class: str) -> Served:
        if data_class == "confidential" and t >= 0.0:
            return Served(True, STANDBY, correct=False)  # the documents are gone
        return Served(True, PRIMARY if data_class == "internal" else STANDBY, correct=True)

    m = compute_metrics(build_records(JournalSpec(reference_design(), scenario, world, length=20.0)))
    s = score(m, m.objectives, m.weights)
    correctness = next(d for d in s.dimensions if d.name == "correctness")
    assert correctness.passed is False and correctness.recommendation is not None
    assert f"The store in {STANDBY} was wiped" in correctness.recommendation
    assert "mistral-small" not in correctness.recommendation


def test_a_run_that_did_not_reach_its_plan_has_no_score() -> None:
    """A steady state that failed before any fault measured a warm-up, not a resilience: no overall,
    no grade, every dimension unmeasured with the run's reason (it was once '❌ FAIL · 100.0/100, A')."""
    spec = JournalSpec(reference_design(), one_phase_scenario(), healthy, length=30.0, exit_code=4)
    records = [
        r for r in build_records(spec) if r["type"] not in ("plan-started", "fault-applied", "fault-reverted")
    ]
    for r in records:
        if r["type"] == "run-ended":
            r["reason"] = "the steady-state hypothesis failed before any fault"
    m = compute_metrics(records)
    assert m.run.plan_start is None
    s = score(m, m.objectives, m.weights)
    assert s.overall is None and s.grade is None and s.passed is False and s.cap is None
    assert set(s.unmeasured) == set(DIMENSIONS)
    assert all(
        d.explanation
        == "Not measured: the run stopped before its plan started (the steady-state hypothesis failed "
        "before any fault)."
        for d in s.dimensions
    )
    document = json.loads(dump_result(build_result(m, s)))
    assert document["score"]["overall"] is None and document["score"]["grade"] is None


def test_overlapping_phases_that_share_their_failures_blame_the_one_that_impairs_answers() -> None:
    """A new user's finding read "Most failures came during 'replication into fr-par paused'"
    where every failure came from the region outage applied 6 s later, in force with it."""
    from bascule.score.advice import worst_phase

    m = example_metrics()
    base = m.phases[0]
    pause = replace(base, index=0, name="replication paused", kind="replication-pause", actual_start=2.0)
    outage = replace(base, index=1, name="us-east-1 dark", kind="region-outage", actual_start=8.0)
    for phases in ((pause, outage), (outage, pause)):
        shared = tuple(replace(p, failed=33) for p in phases)
        assert worst_phase(replace(m, phases=shared), "failed").name == "us-east-1 dark"
    earlier = replace(outage, name="earlier outage", actual_start=1.0, failed=33)
    later = replace(outage, failed=33)
    assert worst_phase(replace(m, phases=(later, earlier)), "failed").name == "us-east-1 dark"
