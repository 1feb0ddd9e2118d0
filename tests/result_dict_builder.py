"""The dict builder of `bascule.result/1` as it stood before the typed model (bascule.reports.model):
the reference the model's JSON is compared with, byte for byte."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict
from typing import Any

from bascule.metrics.model import Latency, Metrics, Outage, PhaseMetrics, Violation
from bascule.score.model import DimensionScore, Score

__all__ = ["build_result_dict"]

RESULT_SCHEMA = "bascule.result/1"


def build_result_dict(metrics: Metrics, score: Score, *, run_dir: str | None = None) -> dict[str, Any]:
    """The result document of one run; ``run_dir`` is recorded as given (``null`` without it)."""
    return {
        "schema": RESULT_SCHEMA,
        "run": _run(metrics, run_dir),
        "score": _score(score),
        "figures": _figures(metrics),
        "phases": [_phase(p) for p in metrics.phases],
        "series": _series(metrics),
        "violations": [_violation(v) for v in metrics.violations],
        "findings": [f.message for f in metrics.findings],
        "events": [{"t": e.t, "text": e.text, "kind": e.kind} for e in metrics.events],
    }


def _run(m: Metrics, run_dir: str | None) -> dict[str, Any]:
    run = m.run
    hypothesis = (
        None if run.hypothesis_skipped else {"before": run.hypothesis_before, "after": run.hypothesis_after}
    )
    return {
        "dir": run_dir,
        "bascule": run.bascule,
        "started_wall": run.started_wall,
        "elapsed": run.elapsed,
        "run_length": run.run_length,
        "plan_start": run.plan_start,
        "exit_code": run.exit_code,
        "reason": run.reason,
        "scenario": dict(run.scenario),
        "design": dict(run.design),
        "hypothesis": hypothesis,
    }


def _score(s: Score) -> dict[str, Any]:
    return {
        "overall": s.overall,
        "grade": None if s.grade is None else s.grade.value,
        "passed": s.passed,
        "cap": None if s.cap is None else {"at": s.cap.at, "reason": s.cap.reason},
        "unmeasured": list(s.unmeasured),
        "dimensions": [_dimension(d) for d in s.dimensions],
    }


def _dimension(d: DimensionScore) -> dict[str, Any]:
    return {
        "name": d.name,
        "weight": d.weight,
        "measured": d.measured,
        "objective": d.objective,
        "unit": d.unit.value,
        "sub_score": d.sub_score,
        "passed": d.passed,
        "explanation": d.explanation,
        "recommendation": d.recommendation,
    }


def _latency(latency: Latency) -> dict[str, float | None]:
    return {"p50": latency.p50, "p95": latency.p95, "p99": latency.p99}


def _outage(o: Outage) -> dict[str, Any]:
    return {"start": o.start, "end": o.end, "cause": o.cause, "rto": o.rto, "phases": list(o.phases)}


def _figures(m: Metrics) -> dict[str, Any]:
    rpo = None
    if m.rpo is not None:
        rpo = {
            "acknowledged": m.rpo.acknowledged,
            "lost": m.rpo.lost,
            "window": m.rpo.window,
            "seconds": m.rpo.seconds,
            "first_lost": m.rpo.first_lost,
            "last_lost": m.rpo.last_lost,
            "interval": m.rpo.interval,
            "unverified": m.rpo.unverified,
        }
    budget = None
    if m.error_budget is not None:
        budget = {
            "allowed": m.error_budget.allowed,
            "spent": m.error_budget.spent,
            "burnt": m.error_budget.burnt,
        }
    cost = None
    if m.cost is not None:
        cost = {
            "currency": m.cost.currency,
            "steady_per_hour": m.cost.steady_per_hour,
            "failover_extra": m.cost.failover_extra,
        }
    return {
        "impact_window": None if m.impact_window is None else list(m.impact_window),
        "requests": m.requests,
        "failed": m.failed,
        "success_ratio": m.success_ratio,
        "success_ratio_baseline": m.success_ratio_baseline,
        "latency": _latency(m.latency),
        "latency_baseline": _latency(m.latency_baseline),
        "by_class": {
            klass: {"requests": n, "ok": ok, "success_ratio": round(ok / n, 6) if n else None}
            for klass, (n, ok) in m.by_class.items()
        },
        "time_to_detect": m.time_to_detect,
        "time_to_failover": m.time_to_failover,
        "rto": m.rto,
        "recovered": m.recovered,
        "outages": [_outage(o) for o in m.outages],
        "failback": m.failback,
        "rpo": rpo,
        "sovereignty_violations": m.sovereignty_violations,
        "violating_requests": m.violating_requests,
        "correctness": {
            "baseline": m.correctness.baseline,
            "impact": m.correctness.impact,
            "graded": m.correctness.graded,
            "baseline_graded": m.correctness.baseline_graded,
        },
        "degraded": m.degraded,
        "error_budget": budget,
        "cost": cost,
        "notes": dict(m.notes),
    }


def _phase(p: PhaseMetrics) -> dict[str, Any]:
    return {
        "index": p.index,
        "name": p.name,
        "kind": p.kind,
        "target": p.target,
        "regions": list(p.regions),
        "real_start": p.real_start,
        "real_end": p.real_end,
        "planned_start": p.planned_start,
        "planned_end": p.planned_end,
        "actual_start": p.actual_start,
        "actual_end": p.actual_end,
        "requests": p.requests,
        "failed": p.failed,
        "success_ratio": p.success_ratio,
        "p95": p.latency.p95,
        "time_to_detect": p.time_to_detect,
        "time_to_failover": p.time_to_failover,
        "rto": p.rto,
        "recovered": p.recovered,
        "share": dict(p.share),
    }


def _shares(shares: Mapping[str, tuple[float | None, ...]]) -> dict[str, list[float | None]]:
    return {key: list(values) for key, values in shares.items()}


def _series(m: Metrics) -> dict[str, Any]:
    s = m.series
    return {
        "t": list(s.t),
        "length": list(s.length),
        "requests": list(s.requests),
        "success_ratio": list(s.success_ratio),
        "p50": list(s.p50),
        "p95": list(s.p95),
        "p99": list(s.p99),
        "share_region": _shares(s.share_region),
        "share_level": _shares(s.share_level),
        "share_provider": _shares(s.share_provider),
    }


def _violation(v: Violation) -> dict[str, Any]:
    return {
        "t": v.t,
        "request_id": v.request_id,
        "source": v.source,
        "data_class": v.data_class,
        "hop": asdict(v.hop),
        "minimum": v.minimum,
        "level": v.level,
    }
