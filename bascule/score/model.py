"""The score's records: one sub-score per dimension with what it was computed from and why, the
overall, its cap and its grade. Pure data, built by `bascule.score.score`."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

__all__ = ["Cap", "DimensionScore", "Grade", "Score", "Unit"]


class Grade(StrEnum):
    A = "A"
    B = "B"
    C = "C"
    D = "D"
    F = "F"


class Unit(StrEnum):
    RATIO = "ratio"
    SECONDS = "s"
    COUNT = "count"


@dataclass(frozen=True)
class DimensionScore:
    name: str
    """availability, recovery, latency, correctness, durability or sovereignty."""
    weight: float
    measured: float | None
    objective: float | None
    unit: Unit
    sub_score: float | None
    """0–100; ``None`` when the figure could not be measured (then out of the overall)."""
    passed: bool | None
    """The measured value meets the objective; ``None`` when not measured."""
    explanation: str
    """One sentence: what was measured against what."""
    recommendation: str | None
    """One sentence when the dimension falls short (or could not be measured)."""


@dataclass(frozen=True)
class Cap:
    at: float
    reason: str


@dataclass(frozen=True)
class Score:
    overall: float | None
    """The weighted mean of the measured sub-scores, capped, to one decimal; ``None`` when no
    dimension with a weight could be measured."""
    grade: Grade | None
    passed: bool
    """Every dimension with a weight was measured and met its objective, sovereignty met its
    objective whatever its weight, and the score is not below `min_score`."""
    cap: Cap | None
    dimensions: tuple[DimensionScore, ...]
    min_score: float | None = None
    """The floor the run was judged against (``--min-score``); None without one."""

    @property
    def unmeasured(self) -> tuple[str, ...]:
        return tuple(d.name for d in self.dimensions if d.sub_score is None)
