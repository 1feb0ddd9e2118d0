"""The explainable 0–100 score of a run: ``score(metrics, objectives, weights) -> Score``, exactly
DESIGN.md's formula (docs/scoring.md), each sub-score with its measured value, its objective, one
sentence on why and, when it falls short, a recommendation."""

from bascule.score.compute import score
from bascule.score.formula import (
    AVAILABILITY_SPAN,
    FAIL_FACTOR,
    SOVEREIGNTY_CAP,
    grade,
    sub_availability,
    sub_correctness,
    sub_durability,
    sub_sovereignty,
    sub_within,
    weighted_mean,
)
from bascule.score.model import Cap, DimensionScore, Grade, Score, Unit

__all__ = [
    "AVAILABILITY_SPAN",
    "FAIL_FACTOR",
    "SOVEREIGNTY_CAP",
    "Cap",
    "DimensionScore",
    "Grade",
    "Score",
    "Unit",
    "grade",
    "score",
    "sub_availability",
    "sub_correctness",
    "sub_durability",
    "sub_sovereignty",
    "sub_within",
    "weighted_mean",
]
