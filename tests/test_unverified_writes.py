"""Canary writes that could not be verified — no region that answered the read-back holds them, and
one that may did not answer (docs/probes.md, `data`) — are neither lost nor kept: durability is
then unmeasured, never passed, and the reports say how many (trial 11: a fenced primary answered
503 to every read-back, and "All 104 acknowledged canary writes were found" passed a run that had
lost 37)."""

from __future__ import annotations

from typing import Any

import journal_factory as jf

from bascule.metrics import Metrics, compute_metrics
from bascule.model.scenario import Objectives, Weights
from bascule.reports._summary import compute_figures
from bascule.reports.result import build_result
from bascule.score import score
from tests.test_score import healthy

PRIMARY, STANDBY = jf.PRIMARY, jf.STANDBY


def _metrics(lost: list[list[Any]], unverified: list[str]) -> Metrics:
    report = {
        "type": "data-report",
        "probe": "canary",
        "acknowledged": 104,
        "lost": lost,
        "lost_window": [lost[0][1], lost[-1][1]] if lost else None,
        "per_region": {STANDBY: [*unverified, *(x[0] for x in lost)]},
        "unverified": unverified,
        "misplaced": {},
        "unreadable": {PRIMARY: [f"c{i}" for i in range(104)]},
    }
    spec = jf.JournalSpec(
        jf.reference_design(),
        jf.one_phase_scenario(),
        healthy,
        length=30.0,
        data_report=False,
        extra=[report],
    )
    return compute_metrics(jf.build_records(spec))


def _durability(m: Metrics, rpo: float) -> Any:
    objectives = Objectives(availability=0.9, rto=60, latency_p95=5, rpo=rpo, sovereignty_violations=0)
    return next(d for d in score(m, objectives, Weights()).dimensions if d.name == "durability")


def test_unverified_writes_and_none_lost_leave_durability_unmeasured() -> None:
    m = _metrics([], [f"c{i}" for i in range(26)])
    assert m.rpo is not None and (m.rpo.lost, m.rpo.unverified, m.rpo.seconds) == (0, 26, None)
    for objective in (0.0, 5.0):
        d = _durability(m, objective)
        assert d.passed is None and d.sub_score is None
        assert "26 of 104 acknowledged canary writes could not be verified" in d.explanation
        assert PRIMARY in d.explanation and "were found" not in d.explanation
    result = build_result(m, score(m, m.objectives, Weights()))
    rpo = next(f for f in compute_figures(result) if "writes lost" in f.value)
    assert rpo.value == "0 of 104 writes lost, 26 unverified" and "unverified:" in rpo.note, rpo


def test_lost_writes_within_the_objective_do_not_pass_while_others_are_unverified() -> None:
    lost = [["c1", jf.ORIGIN + 10.0], ["c2", jf.ORIGIN + 11.0]]
    m = _metrics(lost, ["c3"])
    assert m.rpo is not None and m.rpo.lost == 2 and m.rpo.seconds is not None
    within = _durability(m, 60.0)
    assert within.passed is None and "an RPO of at least" in within.explanation
    beyond = _durability(m, 0.0)  # already past it on what was verified: a measured failure
    assert beyond.passed is False and "1 more could not be verified" in beyond.explanation


def test_writes_all_verified_pass_as_before() -> None:
    m = _metrics([], [])
    assert m.rpo is not None and m.rpo.seconds == 0.0
    d = _durability(m, 0.0)
    assert d.passed is True and "All 104 acknowledged canary writes were found" in d.explanation
