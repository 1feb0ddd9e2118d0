"""Metrics: what a run measured, computed from its journal by a pure function —
``compute_metrics(records) -> Metrics`` — in one pass and memory bounded by the run's duration, never
by its number of requests. docs/scoring.md says how each figure is defined."""

from bascule.metrics import model
from bascule.metrics.compute import SUSTAIN, TICK, compute_metrics
from bascule.metrics.model import *  # noqa: F403  (the records, listed once: model.__all__)

__all__ = ["SUSTAIN", "TICK", "compute_metrics"]
__all__ += model.__all__
