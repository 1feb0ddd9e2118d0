"""What `bascule run` prints when a run ends: the verdict and score, each dimension with its measured
value and objective, and the figures a person reads first (RTO, time to fail over, writes lost,
sovereignty violations). Pure: `render_terminal(result)` returns a rich renderable; the CLI prints
it. A dimension judged over nothing reads "unmeasured", never as a pass."""

from __future__ import annotations

from rich.console import Group, RenderableType
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from bascule.reports import _summary as summary
from bascule.reports._format import DASH
from bascule.reports.model import Result

__all__ = ["KEY_FIGURES", "render_terminal", "score_line"]

KEY_FIGURES = ("RTO", "Time to fail over", "Failback", "RPO", "Sovereignty violations")
"""The figures shown under the dimensions, by their label in the summary."""


def _status(passed: bool | None, unmeasured: bool) -> Text:
    if unmeasured:
        return Text("unmeasured", style="yellow")
    if passed is None:
        return Text(DASH)
    return Text("pass", style="green") if passed else Text("FAIL", style="bold red")


def render_terminal(result: Result) -> RenderableType:
    """The end-of-run summary of ``result`` (a scored run; a run with no score gets its headline)."""
    head = summary.compute_headline(result)
    unmeasured = set(result.score.unmeasured)
    if result.score.overall is None and not result.score.dimensions:
        return Text(f"not scored: {result.run.reason or 'the run did not reach its plan'}", style="yellow")
    style = "green" if head.passed else "red"
    cap = summary.compute_cap(result)
    scored = "not scored" if head.overall is None else f"{head.overall_text}/100, grade {head.grade}"
    if head.unmeasured:  # what kept the pass when every measured dimension met its objective
        scored += f" · {head.unmeasured}"
    headline = Text.assemble(
        (f"{head.verdict} · {scored}", f"bold {style}"),
        f" — {head.scenario_id} on {head.design_id}",
        *([f"\n{cap}"] if cap else []),
    )
    judged = any(d.passed is False for d in result.score.dimensions)  # violations seen before the plan
    if head.overall is None and result.run.plan_start is None and not judged:
        # Nothing of the plan ran (a stack that did not start, a hypothesis that failed): a table of
        # dimensions none of which was measured would only push the reason out of sight.
        why = result.run.reason or "the run did not reach its plan"
        return Group(headline, Text(f"not scored: {why}", style="yellow"))
    dimensions = Table(box=None, pad_edge=False, show_edge=False, header_style="bold")
    for column, justify in (
        ("dimension", "left"),
        ("", "left"),
        ("measured", "right"),
        ("objective", "right"),
        ("sub-score", "right"),
    ):
        dimensions.add_column(column, justify=justify)  # type: ignore[arg-type]
    for row in summary.compute_dimension_rows(result):
        dimensions.add_row(
            row.name,
            _status(row.passed, row.name in unmeasured),
            row.measured,
            row.objective,
            row.sub_score_text,
        )
    figures = Table(box=None, pad_edge=False, show_edge=False, show_header=False)
    figures.add_column(style="bold")
    figures.add_column()
    figures.add_column(style="dim")
    for figure in summary.compute_figures(result):
        if figure.label in KEY_FIGURES:
            figures.add_row(figure.label, figure.value, figure.note)
    unreached = [Text(f"⚠ {sentence}", style="yellow") for sentence in summary.compute_unreached(result)]
    return Group(headline, *unreached, Text(""), dimensions, Text(""), figures)


def score_line(result: Result) -> str:
    """The verdict in one line of rich markup: ``score 100.0/100, grade A, FAIL — sovereignty unmeasured``."""
    score = result.score
    overall = "—" if score.overall is None else f"{score.overall:.1f}"
    verdict = "[green]PASS[/green]" if score.passed else "[red]FAIL[/red]"
    failing = [d.name for d in score.dimensions if d.passed is False]
    unmeasured = summary.compute_headline(result).unmeasured
    tail = f" — failing: {', '.join(failing)}" if failing else (f" — {unmeasured}" if unmeasured else "")
    if score.overall is None:
        why = f" ({escape(result.run.reason)})" if result.run.reason else ""
        return f"not scored{why}, {verdict}{tail}"
    return f"score {overall}/100, grade {score.grade or '—'}, {verdict}{tail}"
