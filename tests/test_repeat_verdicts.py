"""Verdicts over repeated runs, from synthetic journals with known answers (a fault failing half of
the internal requests for 3 s): pass, fail and inconclusive against objectives set below, above and
at the runs' figures; flaky dimensions named with how often they flipped; runs that never
recovered, were not measured or did not complete; repeat.json round trip and the Markdown table."""

from __future__ import annotations

import json
import math
import random
from functools import cache

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
from bascule.metrics.model import Metrics
from bascule.model.scenario import Objectives, Weights
from bascule.reports.model import Result, Run
from bascule.reports.result import build_result
from bascule.score import score
from bascule.verdicts import Verdict, dump_repeat, judge_runs, parse_repeat, render_repeat_markdown
from bascule.verdicts.render import render_flaky_lines

RUNS = 5
WEIGHTS = Weights(availability=25, recovery=20, latency=15, correctness=0, durability=0, sovereignty=15)


def half_failing(seed: int):  # type: ignore[no-untyped-def]
    rng = random.Random(seed)

    def world(t: float, source: str, data_class: str) -> Served:
        if data_class == "confidential":
            return Served(True, STANDBY, correct=True)
        if 0.0 <= t < 3.0:
            return Served(rng.random() >= 0.5, PRIMARY, correct=True)
        return Served(True, PRIMARY, correct=True)

    return world


@cache
def journals() -> tuple[Metrics, ...]:
    scenario = one_phase_scenario(length=3.0, settle=2.0)
    return tuple(
        compute_metrics(
            build_records(
                JournalSpec(
                    reference_design(),
                    scenario,
                    half_failing(seed),
                    length=7.0,
                    warm_up=1.0,
                    canary_period=None,
                )
            )
        )
        for seed in range(RUNS)
    )


def results(availability: float, rto: float = 30.0, *, weights: Weights = WEIGHTS) -> list[Result]:
    out = []
    for m in journals():
        result = build_result(m, score(m, Objectives(availability=availability, rto=rto), weights))
        code = 0 if result.score.passed else 1
        out.append(result.model_copy(update={"run": result.run.model_copy(update={"exit_code": code})}))
    return out


def ratios() -> list[float]:
    return [m.success_ratio for m in journals() if m.success_ratio is not None]


def test_the_runs_measure_a_failure_ratio_that_differs_from_run_to_run() -> None:
    values = ratios()
    assert len(values) == RUNS and len(set(values)) > 1
    assert all(0.6 < v < 0.95 for v in values)


def test_an_objective_below_every_run_passes_and_one_above_fails() -> None:
    low, high = min(ratios()), max(ratios())
    passing = judge_runs(results(low - 0.02))
    availability = passing.dimension("availability")
    assert availability is not None and availability.verdict is Verdict.PASS
    assert availability.interval is not None and availability.interval.low >= low - 0.02
    assert "entirely at or above the objective" in availability.reason
    assert passing.verdict is Verdict.PASS and passing.exit_code == 0 and not passing.flaky

    failing = judge_runs(results(min(0.999, high + 0.02)))
    availability = failing.dimension("availability")
    assert availability is not None and availability.verdict is Verdict.FAIL
    assert failing.verdict is Verdict.FAIL and failing.exit_code == 1
    assert "availability" in failing.reason and not availability.flaky


def test_an_objective_among_the_runs_is_inconclusive_and_flaky() -> None:
    values = sorted(ratios())
    objective = (values[1] + values[2]) / 2  # two runs below it, three above
    summary = judge_runs(results(objective))
    availability = summary.dimension("availability")
    assert availability is not None
    assert availability.verdict is Verdict.INCONCLUSIVE, availability.reason
    assert "straddles the objective" in availability.reason
    assert availability.flaky and availability.flips == "passed 3, failed 2 of 5 runs"
    assert summary.verdict is Verdict.INCONCLUSIVE and summary.flaky and summary.exit_code == 1
    assert render_flaky_lines(summary) == ["availability: passed 3, failed 2 of 5 runs"]
    # The interval is of the mean, inside the runs' range, and the 5-run caveat is said.
    assert availability.interval is not None
    assert values[0] <= availability.interval.low < availability.interval.high <= values[-1]
    assert availability.mean == pytest.approx(sum(values) / RUNS)
    assert any("With 5 runs" in note for note in summary.notes)


def test_the_verdicts_are_deterministic_for_a_seed() -> None:
    objective = sorted(ratios())[2]
    assert dump_repeat(judge_runs(results(objective))) == dump_repeat(judge_runs(results(objective)))


def test_a_run_that_never_recovered_is_the_worst_value_not_a_missing_one() -> None:
    runs = results(0.5)
    first = runs[0]
    dims = tuple(
        d.model_copy(update={"measured": None, "passed": False, "sub_score": 0.0})
        if d.name == "recovery"
        else d
        for d in first.score.dimensions
    )
    never = first.model_copy(update={"score": first.score.model_copy(update={"dimensions": dims})})
    summary = judge_runs([never, *runs[1:]])
    recovery = summary.dimension("recovery")
    assert recovery is not None and recovery.values[0].measured == math.inf
    assert recovery.measured_runs == RUNS and recovery.mean == math.inf
    assert recovery.verdict in (Verdict.INCONCLUSIVE, Verdict.FAIL) and recovery.flaky
    # repeat.json has no Infinity (not JSON): "inf", read back as inf.
    text = dump_repeat(summary)
    assert "Infinity" not in text and json.loads(text)["dimensions"][1]["values"][0]["measured"] == "inf"
    assert parse_repeat(text) == summary


def test_an_unmeasured_dimension_is_unmeasured_not_passed() -> None:
    summary = judge_runs(results(0.5))
    durability = summary.dimension("durability")
    assert durability is not None and durability.verdict is Verdict.UNMEASURED
    assert durability.interval is None and "unmeasured in every run" in durability.reason
    assert not durability.counts  # weight 0: it does not decide the verdict
    weighted = judge_runs(results(0.5, weights=WEIGHTS.model_copy(update={"durability": 10.0})))
    assert weighted.verdict is Verdict.UNMEASURED and weighted.exit_code == 1
    assert "durability unmeasured" in weighted.reason


def test_a_run_that_did_not_complete_is_listed_not_judged_and_its_exit_code_wins() -> None:
    runs = results(0.5)
    aborted = Result(run=Run(exit_code=3, reason="aborted: guardrail"))
    summary = judge_runs([*runs[:2], aborted, *runs[2:]], repeats=RUNS + 1)
    assert [r.counted for r in summary.runs] == [True, True, False, True, True, True]
    availability = summary.dimension("availability")
    assert availability is not None and [v.run for v in availability.values] == [1, 2, 4, 5, 6]
    assert summary.exit_code == 3 and "did not complete (exit 3: aborted: guardrail)" in summary.reason


def test_min_score_is_judged_like_an_objective() -> None:
    summary = judge_runs(results(0.5), min_score=101.0)
    dimension = summary.dimension("score")
    assert dimension is not None and dimension.verdict is Verdict.FAIL and summary.verdict is Verdict.FAIL


def test_the_markdown_table_shows_every_dimension_and_the_flaky_ones() -> None:
    values = sorted(ratios())
    summary = judge_runs(results((values[1] + values[2]) / 2))
    text = render_repeat_markdown(summary)
    assert "| dimension | verdict | mean | 95 % interval | objective |" in text
    assert "| availability | ❔ inconclusive |" in text
    assert "**Flaky** (verdicts differ across runs):\n- availability: passed 3, failed 2 of 5 runs" in text
    assert text.count("\n| ") >= 2 + len(summary.dimensions) + RUNS
