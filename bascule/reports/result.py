"""`build_result`: the ``bascule.result/1`` document (docs/result.md, `bascule.reports.model`) —
everything the reports show, from a run's metrics and score. The contract between measuring and
rendering: ``summary.md``, ``report.html``, the charts and ``bascule compare`` read only this. Pure."""

from __future__ import annotations

from bascule.metrics import model as metrics
from bascule.reports.model import (
    RESULT_SCHEMA,
    ClassFigures,
    Correctness,
    Cost,
    DesignInfo,
    Dimension,
    ErrorBudget,
    Event,
    Figures,
    Hypothesis,
    Latency,
    Outage,
    Phase,
    Result,
    ResultCap,
    ResultHop,
    ResultScore,
    Rpo,
    Run,
    ScenarioInfo,
    Series,
    Violation,
)
from bascule.score.model import DimensionScore, Score

__all__ = ["RESULT_SCHEMA", "build_result"]


def build_result(m: metrics.Metrics, score: Score, *, run_dir: str | None = None) -> Result:
    """The result document of one run; ``run_dir`` is recorded as given (``None`` without it)."""
    return Result(
        run=_run(m.run, run_dir),
        score=_score(score),
        figures=_figures(m),
        phases=tuple(_phase(p) for p in m.phases),
        series=_series(m.series),
        violations=tuple(_violation(v) for v in m.violations),
        findings=tuple(f.message for f in m.findings),
        events=tuple(Event(t=e.t, text=e.text, kind=e.kind) for e in m.events),
    )


def _run(run: metrics.RunInfo, run_dir: str | None) -> Run:
    hypothesis = (
        None
        if run.hypothesis_skipped
        else Hypothesis(before=run.hypothesis_before, after=run.hypothesis_after)
    )
    return Run(
        dir=run_dir,
        bascule=run.bascule,
        started_wall=run.started_wall,
        elapsed=run.elapsed,
        run_length=run.run_length,
        plan_start=run.plan_start,
        exit_code=run.exit_code,
        reason=run.reason,
        scenario=ScenarioInfo.model_validate(run.scenario),
        design=DesignInfo.model_validate(run.design),
        hypothesis=hypothesis,
    )


def _score(s: Score) -> ResultScore:
    return ResultScore(
        overall=s.overall,
        grade=None if s.grade is None else s.grade.value,
        passed=s.passed,
        cap=None if s.cap is None else ResultCap(at=s.cap.at, reason=s.cap.reason),
        unmeasured=s.unmeasured,
        dimensions=tuple(_dimension(d) for d in s.dimensions),
    )


def _dimension(d: DimensionScore) -> Dimension:
    return Dimension(
        name=d.name,
        weight=d.weight,
        measured=d.measured,
        objective=d.objective,
        unit=d.unit.value,
        sub_score=d.sub_score,
        passed=d.passed,
        explanation=d.explanation,
        recommendation=d.recommendation,
    )


def _latency(latency: metrics.Latency) -> Latency:
    return Latency(p50=latency.p50, p95=latency.p95, p99=latency.p99)


def _rpo(rpo: metrics.Rpo | None) -> Rpo | None:
    if rpo is None:
        return None
    return Rpo(
        acknowledged=rpo.acknowledged,
        lost=rpo.lost,
        window=rpo.window,
        seconds=rpo.seconds,
        first_lost=rpo.first_lost,
        last_lost=rpo.last_lost,
        interval=rpo.interval,
        unverified=rpo.unverified,
    )


def _figures(m: metrics.Metrics) -> Figures:
    budget = m.error_budget
    cost = m.cost
    return Figures(
        impact_window=m.impact_window,
        requests=m.requests,
        failed=m.failed,
        success_ratio=m.success_ratio,
        success_ratio_baseline=m.success_ratio_baseline,
        latency=_latency(m.latency),
        latency_baseline=_latency(m.latency_baseline),
        by_class={
            klass: ClassFigures(requests=n, ok=ok, success_ratio=round(ok / n, 6) if n else None)
            for klass, (n, ok) in m.by_class.items()
        },
        time_to_detect=m.time_to_detect,
        time_to_failover=m.time_to_failover,
        rto=m.rto,
        recovered=m.recovered,
        outages=tuple(
            Outage(start=o.start, end=o.end, cause=o.cause, rto=o.rto, phases=o.phases) for o in m.outages
        ),
        failback=m.failback,
        rpo=_rpo(m.rpo),
        sovereignty_violations=m.sovereignty_violations,
        violating_requests=m.violating_requests,
        correctness=Correctness(
            baseline=m.correctness.baseline,
            impact=m.correctness.impact,
            graded=m.correctness.graded,
            baseline_graded=m.correctness.baseline_graded,
        ),
        degraded=m.degraded,
        error_budget=None
        if budget is None
        else ErrorBudget(allowed=budget.allowed, spent=budget.spent, burnt=budget.burnt),
        cost=None
        if cost is None
        else Cost(
            currency=cost.currency, steady_per_hour=cost.steady_per_hour, failover_extra=cost.failover_extra
        ),
        notes=dict(m.notes),
    )


def _phase(p: metrics.PhaseMetrics) -> Phase:
    return Phase(
        index=p.index,
        name=p.name,
        kind=p.kind,
        target=p.target,
        regions=p.regions,
        real_start=p.real_start,
        real_end=p.real_end,
        planned_start=p.planned_start,
        planned_end=p.planned_end,
        actual_start=p.actual_start,
        actual_end=p.actual_end,
        requests=p.requests,
        failed=p.failed,
        success_ratio=p.success_ratio,
        p95=p.latency.p95,
        time_to_detect=p.time_to_detect,
        time_to_failover=p.time_to_failover,
        rto=p.rto,
        recovered=p.recovered,
        share=dict(p.share),
    )


def _series(s: metrics.Series) -> Series:
    return Series(
        t=s.t,
        length=s.length,
        requests=s.requests,
        success_ratio=s.success_ratio,
        p50=s.p50,
        p95=s.p95,
        p99=s.p99,
        share_region=dict(s.share_region),
        share_level=dict(s.share_level),
        share_provider=dict(s.share_provider),
    )


def _violation(v: metrics.Violation) -> Violation:
    hop = v.hop
    return Violation(
        t=v.t,
        request_id=v.request_id,
        source=v.source,
        data_class=v.data_class,
        hop=ResultHop(
            component=hop.component,
            region=hop.region,
            provider=hop.provider,
            jurisdiction=hop.jurisdiction,
            sovereignty=hop.sovereignty,
        ),
        minimum=v.minimum,
        level=v.level,
    )
