"""Metrics: what a run measured, computed from its journal by a pure function —
``compute_metrics(records) -> Metrics`` — in one pass and memory bounded by the run's duration, never
by its number of requests. docs/scoring.md says how each figure is defined."""

from bascule.metrics.compute import SUSTAIN, TICK, compute_metrics
from bascule.metrics.model import (
    Correctness,
    Cost,
    DesignFacts,
    ErrorBudget,
    Event,
    Finding,
    Latency,
    Metrics,
    Outage,
    PhaseMetrics,
    Rpo,
    RunInfo,
    Series,
    Violation,
)

__all__ = [
    "SUSTAIN",
    "TICK",
    "Correctness",
    "Cost",
    "DesignFacts",
    "ErrorBudget",
    "Event",
    "Finding",
    "Latency",
    "Metrics",
    "Outage",
    "PhaseMetrics",
    "Rpo",
    "RunInfo",
    "Series",
    "Violation",
    "compute_metrics",
]
