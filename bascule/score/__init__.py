"""The explainable 0–100 score of a run: ``score(metrics, objectives, weights) -> Score``, exactly
DESIGN.md's formula (docs/scoring.md), each sub-score with its measured value, its objective, one
sentence on why and, when it falls short, a recommendation."""

from bascule.score import formula, model
from bascule.score.compute import score
from bascule.score.formula import *  # noqa: F403  (listed once: formula.__all__)
from bascule.score.model import *  # noqa: F403  (listed once: model.__all__)

__all__ = ["score"]
__all__ += formula.__all__
__all__ += model.__all__
