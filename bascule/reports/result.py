"""`build_result`: the ``bascule.result/1`` document (docs/result.md, `bascule.reports.model`) —
everything the reports show, from a run's metrics and score. The contract between measuring and
rendering: ``summary.md``, ``report.html``, the charts and ``bascule compare`` read only this. Pure."""

from __future__ import annotations

from typing import TypeVar

from pydantic import BaseModel

from bascule.metrics import model as metrics
from bascule.reports.model import (
    RESULT_SCHEMA,
    ClassFigures,
    Correctness,
    Cost,
    DesignInfo,
    Dimension,
    DiscoveredDependency,
    ErrorBudget,
    Event,
    Figures,
    Hypothesis,
    Latency,
    Noise,
    Outage,
    PathSources,
    Phase,
    Result,
    ResultCap,
    ResultHop,
    ResultScore,
    Rpo,
    Run,
    ScenarioInfo,
    Series,
    SourcePaths,
    Traffic,
    Violation,
    ViolationGroup,
)
from bascule.score.model import Score

__all__ = ["RESULT_SCHEMA", "build_result"]

_Model = TypeVar("_Model", bound=BaseModel)


def build_result(m: metrics.Metrics, score: Score, *, run_dir: str | None = None) -> Result:
    """The result document of one run; ``run_dir`` is recorded as given (``None`` without it)."""
    return Result(
        run=_run(m.run, run_dir),
        score=_score(score),
        figures=_figures(m),
        phases=tuple(_phase(p) for p in m.phases),
        series=_copy(Series, m.series),
        violations=tuple(_copy(Violation, v, hop=_copy(ResultHop, v.hop)) for v in m.violations),
        findings=tuple(f.message for f in m.findings),
        events=tuple(_copy(Event, e) for e in m.events),
        discovered=tuple(_copy(DiscoveredDependency, d) for d in m.discovered),
    )


def _copy(model: type[_Model], record: object, **given: object) -> _Model:
    """``model`` from the attribute of the same name of ``record`` for each of its fields, but those
    ``given``: most of the document is a field-for-field copy of the metrics and the score. A field
    ``record`` lacks is an `AttributeError`, never a silent default."""
    values = {name: given[name] if name in given else getattr(record, name) for name in model.model_fields}
    return model.model_validate(values)


def _phase(p: metrics.PhaseMetrics) -> Phase:
    counted = p.traffic
    return _copy(
        Phase,
        p,
        p95=p.latency.p95,
        traffic=None if counted is None else Traffic.model_validate(counted.to_json()),
        reached=None if counted is None else counted.reached,
    )


def _run(run: metrics.RunInfo, run_dir: str | None) -> Run:
    hypothesis = (
        None
        if run.hypothesis_skipped
        else Hypothesis(before=run.hypothesis_before, after=run.hypothesis_after)
    )
    return _copy(
        Run,
        run,
        dir=run_dir,
        scenario=ScenarioInfo.model_validate(run.scenario),
        design=DesignInfo.model_validate(run.design),
        hypothesis=hypothesis,
    )


def _score(s: Score) -> ResultScore:
    return _copy(
        ResultScore,
        s,
        grade=None if s.grade is None else s.grade.value,
        cap=None if s.cap is None else _copy(ResultCap, s.cap),
        dimensions=tuple(_copy(Dimension, d, unit=d.unit.value) for d in s.dimensions),
    )


def _figures(m: metrics.Metrics) -> Figures:
    budget = m.error_budget
    cost = m.cost
    paths = m.paths_by_source
    return _copy(
        Figures,
        m,
        latency=_copy(Latency, m.latency),
        latency_baseline=_copy(Latency, m.latency_baseline),
        by_class={
            klass: ClassFigures(requests=n, ok=ok, success_ratio=round(ok / n, 6) if n else None)
            for klass, (n, ok) in m.by_class.items()
        },
        outages=tuple(_copy(Outage, o) for o in m.outages),
        rpo=None if m.rpo is None else _copy(Rpo, m.rpo),
        correctness=_copy(Correctness, m.correctness),
        noise=_copy(Noise, m.noise),
        error_budget=None if budget is None else _copy(ErrorBudget, budget),
        cost=None if cost is None else _copy(Cost, cost),
        paths_by_source=None
        if paths is None
        else _copy(PathSources, paths, sources=tuple(_copy(SourcePaths, s) for s in paths.sources)),
        violations_by_hop=tuple(
            ViolationGroup(data_class=k, component=c, region=r, level=level, count=n)
            for k, c, r, level, n in m.violations_by_hop
        ),
        notes=dict(m.notes),
    )
