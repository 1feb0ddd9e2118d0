"""The score's arithmetic (DESIGN.md, "Score"; docs/scoring.md): each dimension's sub-score is 100 at
its objective, 0 at its failing point and linear in between; the overall is the weighted mean of the
measured sub-scores, capped at 50 by any sovereignty violation, and graded. Pure functions of
numbers, so that the formula can be read — and tested — on its own."""

from __future__ import annotations

from collections.abc import Mapping

from bascule.score.model import Grade

__all__ = [
    "AVAILABILITY_SPAN",
    "FAIL_FACTOR",
    "GRADES",
    "SOVEREIGNTY_CAP",
    "grade",
    "sub_availability",
    "sub_correctness",
    "sub_durability",
    "sub_sovereignty",
    "sub_within",
    "weighted_mean",
]

AVAILABILITY_SPAN = 0.10
"""Availability scores 0 this far (10 percentage points) below its objective."""
FAIL_FACTOR = 4.0
"""RTO, p95 latency and RPO score 0 at this multiple of their objective."""
SOVEREIGNTY_CAP = 50.0
GRADES = ((90.0, Grade.A), (75.0, Grade.B), (60.0, Grade.C), (40.0, Grade.D))


def _clamp(value: float) -> float:
    return max(0.0, min(100.0, value))


def sub_availability(measured: float, objective: float) -> float:
    """100 at or above the objective, 0 at ``AVAILABILITY_SPAN`` below it."""
    if measured >= objective:
        return 100.0
    return _clamp(100.0 * (measured - (objective - AVAILABILITY_SPAN)) / AVAILABILITY_SPAN)


def sub_within(measured: float, objective: float) -> float:
    """For figures that should stay small (RTO, p95 latency): 100 at or below the objective, 0 at
    ``FAIL_FACTOR`` × the objective (with a 0 objective, anything above it scores 0)."""
    if measured <= objective:
        return 100.0
    top = FAIL_FACTOR * objective
    if measured >= top:
        return 0.0
    return _clamp(100.0 * (top - measured) / (top - objective))


def sub_correctness(measured: float, baseline: float) -> float:
    """100 at or above the baseline accuracy, 0 with no correct answer."""
    if measured >= baseline:
        return 100.0
    return _clamp(100.0 * measured / baseline)


def sub_durability(lost: int, rpo: float, objective: float) -> float:
    """100 when no acknowledged write was lost, 0 at an RPO of ``FAIL_FACTOR`` × the objective (any
    loss, with a 0 objective), linear in the RPO in between."""
    if lost == 0:
        return 100.0
    top = FAIL_FACTOR * objective
    if top <= 0 or rpo >= top:
        return 0.0
    return _clamp(100.0 * (1.0 - rpo / top))


def sub_sovereignty(violations: int) -> float:
    return 100.0 if violations == 0 else 0.0


def weighted_mean(sub_scores: Mapping[str, float], weights: Mapping[str, float]) -> float | None:
    """Σ weight × sub-score / Σ weight over the dimensions given; ``None`` when their weights sum to 0."""
    total = sum(weights[name] for name in sub_scores)
    if total <= 0:
        return None
    return sum(weights[name] * value for name, value in sub_scores.items()) / total


def grade(overall: float) -> Grade:
    for floor, letter in GRADES:
        if overall >= floor:
            return letter
    return Grade.F
