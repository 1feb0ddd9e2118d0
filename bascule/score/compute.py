"""`score`: a run's metrics against its objectives and weights, as DESIGN.md's explainable 0–100
score (docs/scoring.md). Pure.

A dimension whose figure could not be measured gets no sub-score: it takes no part in the weighted
mean (the other weights are renormalised), says why, and keeps the run from passing — a run cannot
pass on what it did not show. Leave a dimension out on purpose by giving it a weight of 0.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

from bascule.exit_codes import ExitCode
from bascule.metrics.model import KILLED, Metrics
from bascule.model.scenario import DIMENSIONS, Objectives, Weights
from bascule.score import advice
from bascule.score.formula import (
    SOVEREIGNTY_CAP,
    grade,
    sub_availability,
    sub_correctness,
    sub_durability,
    sub_sovereignty,
    sub_within,
    weighted_mean,
)
from bascule.score.model import Cap, DimensionScore, Score, Unit

__all__ = ["score"]

_ratio, _s = advice.fmt_ratio, advice.fmt_seconds


def score(metrics: Metrics, objectives: Objectives, weights: Weights) -> Score:
    """The score of one run: a sub-score per dimension, the weighted overall, its cap and grade."""
    builders = {
        "availability": (_availability, Unit.RATIO, advice.recommend_availability),
        "recovery": (_recovery, Unit.SECONDS, advice.recommend_recovery),
        "latency": (_latency, Unit.SECONDS, advice.recommend_latency),
        "correctness": (_correctness, Unit.RATIO, advice.recommend_correctness),
        "durability": (_durability, Unit.SECONDS, advice.recommend_durability),
        "sovereignty": (_sovereignty, Unit.COUNT, advice.recommend_sovereignty),
    }
    scored = []
    for name in DIMENSIONS:
        build, unit, advise = builders[name]
        weight = float(getattr(weights, name))
        scored.append(build(metrics, objectives, _Dimension(name, weight, unit, partial(advise, metrics))))
    dimensions = tuple(scored)
    if metrics.run.plan_start is None:
        return _not_scored(metrics, dimensions)
    aborted = metrics.run.exit_code == ExitCode.ABORTED
    if aborted and (metrics.run.reason or "").startswith("interrupted"):
        return _not_scored(metrics, dimensions, before="was interrupted before its plan ended")
    if metrics.run.exit_code is None and (metrics.run.reason or "").startswith(KILLED):
        return _not_scored(metrics, dimensions, before="never ended")
    measured = {d.name: d.sub_score for d in dimensions if d.sub_score is not None}
    mean = weighted_mean(measured, {d.name: d.weight for d in dimensions})
    cap = None
    if metrics.sovereignty_violations > 0:
        n = metrics.sovereignty_violations
        cap = Cap(SOVEREIGNTY_CAP, f"{n} sovereignty violation{'s' if n != 1 else ''}")
        if mean is not None:
            mean = min(mean, SOVEREIGNTY_CAP)
    overall = None if mean is None else round(mean, 1)
    # Sovereignty beyond its objective fails the run whatever its weight, as it caps it.
    # A run a guardrail stopped keeps its score (what it measured until then) but never passes,
    # nor does one whose score is below the floor it was run with (`--min-score`).
    floor = metrics.run.min_score
    passed = (
        not aborted
        and overall is not None
        and all(d.passed is True for d in dimensions if d.weight > 0)
        and all(d.passed is not False for d in dimensions if d.name == "sovereignty")
        and (floor is None or overall >= floor)
    )
    return Score(
        overall=overall,
        grade=None if overall is None else grade(overall),
        passed=passed,
        cap=cap,
        dimensions=dimensions,
        min_score=floor,
    )


def _not_scored(
    metrics: Metrics, dimensions: tuple[DimensionScore, ...], before: str = "stopped before its plan started"
) -> Score:
    """A run that stopped before its plan started has no score: what it measured (a warm-up, a
    steady state that failed) says nothing about the faults it never met. Nor has a run interrupted
    midway: its figures cover the part of the plan it met. A sovereignty violation it saw is kept
    all the same: confidential data that left its jurisdiction did, whatever the phase."""
    reason = metrics.run.reason
    why = f"the run {before}" + (f" ({reason})" if reason else "")
    how = "Make the run reach its plan (its reason is in the summary), then run it again."
    return Score(
        overall=None,
        grade=None,
        passed=False,
        cap=None,
        min_score=metrics.run.min_score,
        dimensions=tuple(
            d
            if d.name == "sovereignty" and d.passed is False
            else _unmeasured(d.name, d.weight, d.objective, d.unit, why, how)
            for d in dimensions
        ),
    )


def _unmeasured(
    name: str, weight: float, objective: float | None, unit: Unit, why: str, how: str
) -> DimensionScore:
    return DimensionScore(
        name=name,
        weight=weight,
        measured=None,
        objective=objective,
        unit=unit,
        sub_score=None,
        passed=None,
        explanation=f"Not measured: {why}.",
        recommendation=how if weight > 0 else None,
    )


@dataclass(frozen=True)
class _Dimension:
    """What each sub-score of a dimension carries whatever was measured: its name, its weight, the
    unit of its figure, and the advice written when it falls short."""

    name: str
    weight: float
    unit: Unit
    advise: Callable[[], str]

    def unmeasured(self, objective: float | None, why: str, how: str) -> DimensionScore:
        return _unmeasured(self.name, self.weight, objective, self.unit, why, how)

    def measured(
        self, values: tuple[float | None, float | None], verdict: tuple[float, bool], explanation: str
    ) -> DimensionScore:
        """``values``: (measured, objective); ``verdict``: (sub-score, passed). A recommendation is
        written only when the dimension falls short."""
        (measured, objective), (sub, passed) = values, verdict
        return DimensionScore(
            name=self.name,
            weight=self.weight,
            measured=measured,
            objective=objective,
            unit=self.unit,
            sub_score=round(sub, 2),
            passed=passed,
            explanation=explanation,
            recommendation=None if passed and sub >= 100.0 else self.advise(),
        )


def _why(metrics: Metrics, *keys: str) -> str:
    for key in keys:
        if key in metrics.notes:
            return metrics.notes[key]
    return "the journal does not say"


def _plural(n: int, word: str) -> str:
    return f"{n} {word}{'s' if n != 1 else ''}"


def _availability(m: Metrics, o: Objectives, d: _Dimension) -> DimensionScore:
    if m.success_ratio is None:
        why = _why(m, "success_ratio", "impact_window")
        how = "Make sure load or probes run while the faults are in force."
        return d.unmeasured(o.availability, why, how)
    text = (
        f"{_ratio(m.success_ratio)} of {m.requests} requests succeeded during the impact window "
        f"({m.failed} failed); the objective is {_ratio(o.availability)}."
    )
    verdict = (sub_availability(m.success_ratio, o.availability), m.success_ratio >= o.availability)
    return d.measured((m.success_ratio, o.availability), verdict, text)


def _recovery(m: Metrics, o: Objectives, d: _Dimension) -> DimensionScore:
    if m.recovered is None:
        how = "Let the plan apply its faults: recovery is timed from them."
        return d.unmeasured(o.rto, _why(m, "rto", "impact_window"), how)
    target = _ratio(m.objectives.availability)
    goal = f"the objective is {_s(o.rto)}"
    if m.recovered is False or m.rto is None:
        text = f"The success ratio never got back to {target} before the run ended; {goal}."
        verdict = (0.0, False)
    else:
        if not m.outages:
            text = f"The success ratio never fell below {target} after the first fault; {goal}."
        else:
            text = (
                f"The success ratio was back at {target} {_s(m.rto)} after the fault that began the "
                f"longest outage ({_plural(len(m.outages), 'outage')} in all); {goal}."
            )
        verdict = (sub_within(m.rto, o.rto), m.rto <= o.rto)
    return d.measured((m.rto, o.rto), verdict, text)


def _latency(m: Metrics, o: Objectives, d: _Dimension) -> DimensionScore:
    p95 = m.latency.p95
    if p95 is None:
        why = _why(m, "latency", "impact_window")
        how = "Latency is that of successful requests: make sure some succeed during the impact window."
        return d.unmeasured(o.latency_p95, why, how)
    before = m.latency_baseline.p95
    was = f" ({_s(before)} before the first fault)" if before is not None else ""
    text = (
        f"The p95 latency of successful requests was {_s(p95)} during the impact window{was}; "
        f"the objective is {_s(o.latency_p95)}."
    )
    return d.measured((p95, o.latency_p95), (sub_within(p95, o.latency_p95), p95 <= o.latency_p95), text)


def _correctness(m: Metrics, o: Objectives, d: _Dimension) -> DimensionScore:
    c = m.correctness
    target = o.correctness if o.correctness is not None else c.baseline
    against = "the objective" if o.correctness is not None else "the accuracy before the first fault"
    if c.impact is None or target is None:
        why = (
            _why(m, "correctness")
            if c.impact is None
            else "no golden answer was graded before the first fault, and the objectives set no accuracy"
        )
        how = "Ask golden questions during the run (a rag probe), or set weights.correctness to 0."
        return d.unmeasured(target, why, how)
    if o.correctness is None and target == 0.0:
        # Nothing to fall from: a service that does not answer the reference golden questions (one
        # of your own sent them, load.requests without questions) would pass at 0 % against 0 %.
        why = (
            f"none of the {c.baseline_graded} golden answers graded before the first fault was correct: "
            + (
                "the service does not answer the golden set's questions, so a drop cannot be told"
                if c.impact == 0.0
                else "there is no accuracy to judge the fault's against"
            )
        )
        how = (
            "Give the load questions of your own (load.requests.questions: not graded) and a rag "
            "probe with the facts your answers must hold, set objectives.correctness, or set "
            "weights.correctness to 0."
        )
        return d.unmeasured(target, why, how)
    text = (
        f"{_ratio(c.impact)} of {c.graded} graded golden answers were correct during the impact window, "
        f"against {_ratio(target)} ({against})."
    )
    return d.measured((c.impact, target), (sub_correctness(c.impact, target), c.impact >= target), text)


_UNVERIFIED_HOW = (
    "Let every region the data probe may read answer its read-back after the run: a region still "
    "down, fenced or erroring cannot tell whether it holds a write (docs/probes.md, data)."
)


def _durability(m: Metrics, o: Objectives, d: _Dimension) -> DimensionScore:
    rpo = m.rpo
    if rpo is None or rpo.seconds is None:
        why = m.notes.get("rpo", "")
        how = (
            "Add a data probe (steady_state.probes, kind: data) with your service's write and read-back "
            "requests (docs/probes.md), or set weights.durability to 0."
            if "no data probe" in why
            else _UNVERIFIED_HOW
            if rpo is not None and rpo.unverified
            else "Let the run finish: canary writes are read back after it settles."
        )
        return d.unmeasured(o.rpo, _why(m, "rpo"), how)
    if rpo.lost and rpo.unverified and o.rpo > 0 and rpo.seconds <= o.rpo:
        # Within the objective on what was verified; the unverified could push it past: no pass.
        why = (
            f"{rpo.lost} of {rpo.acknowledged} acknowledged canary writes were lost, an RPO of at least "
            f"{_s(rpo.seconds)}; {_why(m, 'rpo_unverified')}"
        )
        return d.unmeasured(o.rpo, why, _UNVERIFIED_HOW)
    if rpo.lost == 0:
        text = (
            f"All {rpo.acknowledged} acknowledged canary writes were found after the run; "
            f"the RPO objective is {_s(o.rpo)}."
        )
        passed = True
    else:
        text = (
            f"{rpo.lost} of {rpo.acknowledged} acknowledged canary writes "
            f"{'was' if rpo.lost == 1 else 'were'} lost, an RPO of "
            f"{'at least ' if rpo.unverified else ''}{_s(rpo.seconds)}; the objective is {_s(o.rpo)}"
            + (f" ({rpo.unverified} more could not be verified)." if rpo.unverified else ".")
        )
        passed = o.rpo > 0 and rpo.seconds <= o.rpo
    return d.measured((rpo.seconds, o.rpo), (sub_durability(rpo.lost, rpo.seconds, o.rpo), passed), text)


def _sovereignty(m: Metrics, o: Objectives, d: _Dimension) -> DimensionScore:
    allowed = float(o.sovereignty_violations)
    if not m.sovereignty_judged:
        why = m.notes.get("sovereignty", "")
        how = (
            "Send traffic during the run so that every request's hops can be judged."
            if why.startswith("no request was judged")
            else "Let bascule see where each request went — the services pass W3C traceparent on, "
            "report their hops (paths.hops of a probe), or export spans (bascule run --otlp; "
            "docs/own-services.md) — or leave sovereignty out with weights.sovereignty: 0."
        )
        return d.unmeasured(allowed, _why(m, "sovereignty"), how)
    n = m.sovereignty_violations
    over = ""
    if m.sovereignty_judged_requests is not None:
        over = f" (judged over {_plural(m.sovereignty_judged_requests, 'request')} whose path was known"
        over += f"; {m.sovereignty_unattributed} more without one)" if m.sovereignty_unattributed else ")"
    if n == 0:
        text = f"No request touched a hop below its data class's minimum sovereignty level{over}."
    else:
        klass, component, region, level, _ = (m.violations_by_hop or (("?", "?", "?", "?", 0),))[0]
        text = (
            f"{_plural(n, 'hop')} of {_plural(m.violating_requests, 'request')} ran below their data "
            f"class's minimum level (most often {klass} data on the {component} "
            f"{f'in {region}' if region else 'outside the design'}, {level}); "
            f"any violation scores 0 and caps the overall at {SOVEREIGNTY_CAP:g}{over}."
        )
    return d.measured((float(n), allowed), (sub_sovereignty(n), n <= allowed), text)
