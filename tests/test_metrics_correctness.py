"""Correctness over time: the series per window and answering region, the wrong stretches, the
correctness RTO and the share of answers served wrong (bascule.metrics.correctness)."""

from __future__ import annotations

import random
from typing import Any

import pytest
from journal_factory import (
    PRIMARY,
    STANDBY,
    JournalSpec,
    Served,
    build_records,
    one_phase_scenario,
    reference_design,
)

from bascule.metrics import compute_metrics
from bascule.metrics.correctness import SUSTAIN, wrong_stretches
from bascule.metrics.state import MergedWindow
from bascule.reports.html import render_html
from bascule.reports.markdown import render_markdown
from bascule.reports.result import build_result
from bascule.score import score


def wrong_world(start: float, end: float, *, every: int = 1, region: str = PRIMARY) -> Any:
    """Every answer served (2xx); the answers written in `region` wrong over ``[start, end)`` — one
    in `every` of them, in a fixed rhythm."""
    counter = {"n": 0}

    def world(t: float, source: str, data_class: str) -> Served:
        if data_class == "confidential":
            return Served(True, STANDBY, correct=True)
        if start <= t < end and region == PRIMARY:
            counter["n"] += 1
            return Served(True, PRIMARY, correct=counter["n"] % every != 0)
        return Served(True, PRIMARY, correct=True)

    return world


def run(world: Any, *, length: float = 40.0, phase: float = 12.0, **kw: Any) -> Any:
    scenario = one_phase_scenario(kind="degrade", length=phase, fault={"kind": "degrade", "ratio": 1.0})
    return compute_metrics(
        build_records(JournalSpec(reference_design(), scenario, world, length=length, **kw))
    )


def test_answers_wrong_for_8s_give_a_correctness_rto_of_8s_to_a_window() -> None:
    m = run(wrong_world(0.0, 8.0))
    c = m.correctness
    assert c.recovered is True
    assert c.rto is not None and abs(c.rto - 8.0) <= 1.0
    assert m.rto == 0.0  # every answer was served: availability never dropped
    assert c.wrong > 0 and c.wrong_share is not None and 0 < c.wrong_share < 1
    assert c.wrong_share == pytest.approx(c.wrong / c.graded)


def test_a_share_of_wrong_answers_is_one_stretch_until_sustained_right() -> None:
    # One answer in four wrong for 10 s: some windows are right by chance, none for a whole second.
    m = run(wrong_world(0.0, 10.0, every=4))
    assert m.correctness.rto is not None and abs(m.correctness.rto - 10.0) <= 1.0
    assert m.correctness.wrong_stretches >= 1


def test_answers_never_right_again_are_not_recovered_and_no_rto() -> None:
    m = run(wrong_world(0.0, 1000.0), length=25.0)
    assert m.correctness.recovered is False and m.correctness.rto is None
    assert "not back" in m.notes["correctness_rto"]


def test_right_answers_throughout_recover_at_once() -> None:
    m = run(wrong_world(0.0, 0.0))
    assert m.correctness.rto == 0.0 and m.correctness.recovered is True
    assert m.correctness.wrong == 0 and m.correctness.wrong_share == 0.0


def test_no_graded_answer_is_unmeasured_never_a_pass() -> None:
    def world(t: float, source: str, data_class: str) -> Served:
        return Served(True, STANDBY if data_class == "confidential" else PRIMARY, correct=None)

    m = run(world)
    c = m.correctness
    assert c.rto is None and c.recovered is None and c.wrong_share is None
    assert "golden" in m.notes["correctness_rto"]
    result = build_result(m, score(m, m.objectives, m.weights))
    md = render_markdown(result)
    assert "| **Correctness RTO** | unmeasured |" in md and "| **Answers served wrong** | unmeasured |" in md
    assert "Correctness unmeasured" in render_html(result)


def test_the_series_is_per_window_and_per_answering_region() -> None:
    m = run(wrong_world(0.0, 8.0))
    s = m.series
    assert len(s.graded) == len(s.t) == len(s.correct_ratio)
    assert set(s.correct_region) == {PRIMARY, STANDBY}
    during = [v for t, v in zip(s.t, s.correct_region[PRIMARY], strict=True) if 1 <= t < 7 and v is not None]
    after = [v for t, v in zip(s.t, s.correct_region[PRIMARY], strict=True) if 10 <= t < 30 and v is not None]
    assert during and max(during) == 0.0
    assert after and min(after) == 1.0
    assert all(v in (None, 1.0) for v in s.correct_region[STANDBY])
    result = build_result(m, score(m, m.objectives, m.weights))
    assert result.series.correct_region[PRIMARY] == s.correct_region[PRIMARY]
    html = render_html(result)
    assert "Correct answers" in html and "correctness RTO" in html
    assert "### Correct answers over time" in render_markdown(result)


def test_the_answering_region_is_the_llms() -> None:
    def world(t: float, source: str, data_class: str) -> Served:
        # Passages from the standby, the answer written by the primary's llm.
        return Served(True, STANDBY, correct=not 0 <= t < 5, llm_region=PRIMARY)

    m = run(world, length=20.0)
    assert min(v for v in m.series.correct_region[PRIMARY] if v is not None) == 0.0


def _window(start: float, correct: int, graded: int) -> MergedWindow:
    w = MergedWindow(start, 1.0)
    w.golden = [correct, graded]
    return w


def test_windows_without_graded_answers_neither_end_nor_prolong_a_stretch() -> None:
    windows = [_window(0, 0, 4), _window(1, 0, 0), _window(2, 0, 0), _window(3, 4, 4), _window(4, 4, 4)]
    found = wrong_stretches(
        windows, 0.0, 10.0, target=1.0, noise_rate=0.0, cause=lambda began, end: (0.0, ()), alpha=0.001
    )
    assert len(found) == 1 and found[0].end == 1.0 and found[0].rto == 1.0
    assert SUSTAIN == 1.0


def test_steady_state_wrong_answers_are_noise_not_a_stretch() -> None:
    rng = random.Random(7)
    windows = [_window(i, c := sum(rng.random() > 0.05 for _ in range(20)), 20) for i in range(60)]
    del c
    found = wrong_stretches(
        windows, 0.0, 60.0, target=0.95, noise_rate=0.05, cause=lambda began, end: (0.0, ()), alpha=0.001
    )
    assert found == []
    # The same answers judged against a steady state that had no wrong answer are stretches.
    strict = wrong_stretches(
        windows, 0.0, 60.0, target=1.0, noise_rate=0.0, cause=lambda began, end: (0.0, ()), alpha=0.001
    )
    assert strict
