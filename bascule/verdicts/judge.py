"""Verdicts over N runs of one scenario × design: per dimension, the distribution of the measured
figure, a 95 % bootstrap interval of its mean over the runs, and pass / fail / inconclusive against
its objective — inconclusive when the interval straddles it — with the reason in words; and flakes:
a dimension whose per-run verdicts differ. Pure: `Result` documents in, a `RepeatSummary` out.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence

from bascule.reports.model import Dimension, Result
from bascule.verdicts.model import (
    Better,
    DimensionVerdict,
    Interval,
    RepeatRun,
    RepeatSummary,
    RunValue,
    Verdict,
)
from bascule.verdicts.render import show_value
from bascule.verdicts.stats import bootstrap_mean_interval, coverage_limit

__all__ = ["CALIBRATED_FROM", "judge_dimension", "judge_runs"]

CALIBRATED_FROM = 8
"""Runs from which the 95 % intervals hold the truth 93–95 % of the time in the calibration test."""

_BETTER = {
    "availability": Better.HIGHER,
    "correctness": Better.HIGHER,
    "score": Better.HIGHER,
    "recovery": Better.LOWER,
    "latency": Better.LOWER,
    "durability": Better.LOWER,
    "sovereignty": Better.LOWER,
}
# The most serious exit code wins, as in a suite: invalid input over target error over aborted.
_SEVERITY = {0: 0, 1: 1, 3: 2, 4: 3, 2: 4}


def _value(dimension: Dimension, better: Better) -> float | None:
    """The figure a run measured; a failed dimension without a number (never recovered) is the
    worst value there is, so that it weighs in the mean instead of vanishing from it."""
    if dimension.measured is not None:
        return float(dimension.measured)
    if dimension.passed is False:
        return math.inf if better is Better.LOWER else -math.inf
    return None


def _flips(values: Sequence[RunValue]) -> tuple[bool, str]:
    passed = sum(1 for v in values if v.passed is True)
    failed = sum(1 for v in values if v.passed is False)
    unmeasured = len(values) - passed - failed
    kinds = sum(1 for count in (passed, failed, unmeasured) if count)
    if kinds < 2:
        return False, ""
    parts = [
        f"{word} {count}"
        for word, count in (("passed", passed), ("failed", failed), ("unmeasured", unmeasured))
        if count
    ]
    return True, f"{', '.join(parts)} of {len(values)} runs"


def _side(bounds: Interval, objective: float, better: Better, unit: str) -> tuple[Verdict, str]:
    low, high = bounds.low, bounds.high
    if bounds.of == "margin":
        goal, shown = 0.0, "0 (the objective of each run)"
        higher = True
    else:
        goal, shown = objective, show_value(objective, unit)
        higher = better is Better.HIGHER
    if (low >= goal) if higher else (high <= goal):
        side = "at or above" if higher else "at or below"
        return Verdict.PASS, f"entirely {side} the objective {shown}"
    if (high < goal) if higher else (low > goal):
        side = "below" if higher else "above"
        return Verdict.FAIL, f"entirely {side} the objective {shown}"
    return Verdict.INCONCLUSIVE, f"straddles the objective {shown}: these runs cannot tell whether it is met"


def judge_dimension(
    name: str,
    values: Sequence[RunValue],
    *,
    unit: str = "",
    weight: float | None = None,
    confidence: float = 0.95,
    seed: int = 0,
    why_unmeasured: str = "",
) -> DimensionVerdict:
    """One dimension over the runs: its interval, its verdict and whether it flipped."""
    better = _BETTER.get(name, Better.HIGHER)
    measured = [v for v in values if v.measured is not None]
    objectives = {v.objective for v in measured if v.objective is not None}
    objective = next((v.objective for v in values if v.objective is not None), None)
    flaky, flips = _flips(values)
    passed = sum(1 for v in values if v.passed is True)
    failed = sum(1 for v in values if v.passed is False)
    base = DimensionVerdict(
        name=name,
        unit=unit,
        weight=weight,
        better=better,
        objective=objective,
        values=tuple(values),
        measured_runs=len(measured),
        passed_runs=passed,
        failed_runs=failed,
        flaky=flaky,
        flips=flips,
        counts=(weight or 0) > 0 or name in ("sovereignty", "score"),
    )
    unmeasured = len(values) - len(measured)
    if not measured or objective is None:
        why = f": {why_unmeasured}" if why_unmeasured else ""
        reason = f"unmeasured in every run{why}" if not measured else "no objective to judge it against"
        return base.model_copy(update={"verdict": Verdict.UNMEASURED, "reason": reason})
    numbers = [float(v.measured) for v in measured if v.measured is not None]
    finite = [x for x in numbers if math.isfinite(x)]
    stats = {
        "mean": statistics.fmean(numbers)
        if len(finite) == len(numbers)
        else (math.inf if better is Better.LOWER else -math.inf),
        "stdev": statistics.stdev(finite) if len(finite) >= 2 else None,
        "minimum": min(numbers),
        "maximum": max(numbers),
    }
    also = f"; unmeasured in {unmeasured} of {len(values)} runs" if unmeasured else ""
    if len(measured) < 2:
        reason = (
            f"measured in only 1 of {len(values)} runs ({show_value(numbers[0], unit)}): no interval{also}"
        )
        return base.model_copy(update={**stats, "verdict": Verdict.INCONCLUSIVE, "reason": reason})
    if len(objectives) > 1:  # correctness against each run's own pre-fault accuracy
        sign = 1.0 if better is Better.HIGHER else -1.0
        sample = [sign * (x - float(v.objective or 0.0)) for x, v in zip(numbers, measured, strict=True)]
        of = "margin"
    else:
        sample, of = numbers, "mean"
    bounds = bootstrap_mean_interval(sample, confidence=confidence, seed=f"{seed}:{name}")
    interval = Interval(
        low=bounds.low,
        high=bounds.high,
        confidence=confidence,
        of=of,
        coverage_limit=coverage_limit(len(sample)),
    )
    verdict, where = _side(interval, objective, better, unit)
    shown_unit = "" if of == "margin" else unit
    what = (
        "the margin to each run's objective" if of == "margin" else f"mean {show_value(stats['mean'], unit)}"
    )
    reason = (
        f"{what} over {len(measured)} runs, {confidence * 100:g} % interval "
        f"[{show_value(interval.low, shown_unit)}, {show_value(interval.high, shown_unit)}], {where}{also}"
    )
    return base.model_copy(update={**stats, "interval": interval, "verdict": verdict, "reason": reason})


def _dimension_values(results: Sequence[Result], name: str) -> tuple[list[RunValue], str, float | None, str]:
    values: list[RunValue] = []
    unit, weight, why = "", None, ""
    better = _BETTER.get(name, Better.HIGHER)
    for index, result in enumerate(results, start=1):
        dimension = result.score.dimension(name)
        if dimension is None:
            values.append(RunValue(run=index))
            continue
        unit, weight = (
            dimension.unit or unit,
            float(dimension.weight) if dimension.weight is not None else weight,
        )
        if dimension.passed is None and not why:
            why = dimension.explanation
        objective = None if dimension.objective is None else float(dimension.objective)
        values.append(
            RunValue(
                run=index,
                measured=_value(dimension, better),
                objective=objective,
                passed=dimension.passed,
                samples=_samples(result, name),
            )
        )
    return values, unit, weight, why


def _samples(result: Result, name: str) -> int | None:
    """What a ratio figure was counted over (the impact window's requests, its graded answers)."""
    counts = {"availability": result.figures.requests, "correctness": result.figures.correctness.graded}
    return counts.get(name) or None


def _score_values(results: Sequence[Result], min_score: float) -> list[RunValue]:
    return [
        RunValue(
            run=index,
            measured=result.score.overall,
            objective=min_score,
            passed=None if result.score.overall is None else result.score.overall >= min_score,
        )
        for index, result in enumerate(results, start=1)
    ]


def _overall(dimensions: Sequence[DimensionVerdict], counted: Sequence[RepeatRun]) -> tuple[Verdict, str]:
    deciding = [d for d in dimensions if d.counts]
    failing = [d.name for d in deciding if d.verdict is Verdict.FAIL]
    if failing:
        return Verdict.FAIL, f"objectives not met over the runs: {', '.join(failing)}"
    unsure = [d.name for d in deciding if d.verdict is Verdict.INCONCLUSIVE]
    if unsure:
        return Verdict.INCONCLUSIVE, f"inconclusive: {', '.join(unsure)} straddle their objective"
    missing = [
        d.name
        for d in deciding
        if d.verdict is Verdict.UNMEASURED and ((d.weight or 0) > 0 or d.name == "score")
    ]
    if missing:
        return Verdict.UNMEASURED, f"not shown: {', '.join(missing)} unmeasured"
    if counted and all(r.exit_code != 0 for r in counted):  # e.g. the hypothesis failed after rollback
        return Verdict.FAIL, f"every one of the {len(counted)} runs failed: {counted[0].reason}"
    return Verdict.PASS, f"every objective met over the {len(counted)} runs"


def judge_runs(
    results: Sequence[Result],
    *,
    repeats: int | None = None,
    min_score: float | None = None,
    confidence: float = 0.95,
    seed: int = 0,
) -> RepeatSummary:
    """The verdicts of `results`, N runs of one scenario × design in the order they ran, each with
    its final exit code in ``run.exit_code``. Runs that did not complete (exit 2, 3, 4) are listed
    but not judged; their most serious exit code is the summary's."""
    runs = tuple(
        RepeatRun(
            run=index,
            dir=r.run.dir,
            exit_code=r.run.exit_code or 0,
            reason=r.run.reason or "",
            score=r.score.overall,
            grade=r.score.grade,
            counted=(r.run.exit_code or 0) in (0, 1),
        )
        for index, r in enumerate(results, start=1)
    )
    judged = [r for r, info in zip(results, runs, strict=True) if info.counted]
    counted = [info for info in runs if info.counted]
    first = next(iter(results), None)
    names: list[str] = []
    for r in judged:
        names += [d.name for d in r.score.dimensions if d.name not in names]
    dimensions = []
    for name in names:
        values, unit, weight, why = _dimension_values(judged, name)
        values = [v.model_copy(update={"run": info.run}) for v, info in zip(values, counted, strict=True)]
        dimensions.append(
            judge_dimension(
                name, values, unit=unit, weight=weight, confidence=confidence, seed=seed, why_unmeasured=why
            )
        )
    if min_score is not None and judged:
        values = [
            v.model_copy(update={"run": info.run})
            for v, info in zip(_score_values(judged, min_score), counted, strict=True)
        ]
        dimensions.append(judge_dimension("score", values, unit="points", confidence=confidence, seed=seed))
    verdict, reason = _overall(dimensions, counted) if counted else (Verdict.UNMEASURED, "no run completed")
    flaky = any(d.flaky and d.counts for d in dimensions) or len({r.exit_code for r in counted}) > 1
    worst = max((r.exit_code for r in runs if not r.counted), key=lambda c: _SEVERITY.get(c, 3), default=None)
    if worst is not None:
        stopped = [r for r in runs if not r.counted]
        reason += f"; {len(stopped)} run(s) did not complete (exit {worst}: {stopped[-1].reason})"
        exit_code = worst
    else:
        exit_code = 0 if verdict is Verdict.PASS else 1
    notes = []
    if counted and len(counted) < CALIBRATED_FROM:
        notes.append(
            f"With {len(counted)} runs a 95 % interval of the mean is narrower than it should be: an "
            f"interval inside the runs' range holds the truth at most "
            f"{coverage_limit(len(counted)) * 100:.0f} % of the time, and the calibration test "
            f"measures 93–95 % from {CALIBRATED_FROM} runs on. Repeat more for verdicts CI can trust."
        )
    return RepeatSummary(
        scenario=None if first is None else first.run.scenario.id,
        design=None if first is None else first.run.design.id,
        repeats=repeats if repeats is not None else len(results),
        runs=runs,
        dimensions=tuple(dimensions),
        verdict=verdict,
        flaky=flaky,
        exit_code=exit_code,
        reason=reason,
        notes=tuple(notes),
        seed=seed,
    )
