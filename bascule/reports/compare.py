"""Designs side by side: many run results (`bascule.result/1`, `bascule.reports.model.Result`) → one
comparison. Pure.

`build_comparison(results)` arranges results by scenario and design, picks the winner of each
scenario and says why in words — the dimensions where the winner beats the runner-up by the most
— and `render_compare_markdown` prints it for a pull request or a design review. When a scenario
was run more than once against a design, the last result given wins.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from bascule.reports._format import fmt_seconds, md_text
from bascule.reports._repeat import MARKS, compute_repeat_view, verdict_text
from bascule.reports._summary import failback_value, failover_value
from bascule.reports.model import Dimension, Figures, RepeatContext, Result
from bascule.score.formula import grade

__all__ = [
    "BEGIN_MARK",
    "END_MARK",
    "Cell",
    "Comparison",
    "ScenarioVerdict",
    "build_comparison",
    "render_compare_markdown",
    "splice_generated",
]

DIMENSIONS = ("availability", "recovery", "latency", "correctness", "durability", "sovereignty")


@dataclass(frozen=True)
class Cell:
    """One design under one scenario."""

    scenario: str
    design: str
    overall: float | None
    """None for a run that was not scored (it stopped before its plan started): shown as such,
    ranked after every scored one."""
    grade: str
    passed: bool
    capped: str | None
    dimensions: Mapping[str, Dimension]
    figures: Figures
    run_dir: str
    exit_code: int | None = None
    reason: str = ""
    discovered: tuple[str, ...] = ()
    """Hosts outside the design the run reached: ``sts.amazonaws.com (aws, US, foreign)``."""
    unreached: tuple[str, ...] = ()
    """The phases whose fault reached no traffic while in force (docs/faults.md): ``2 latency``."""
    repeat: RepeatContext | None = None
    """A repeated item (docs/repeats.md): ``overall`` is then the mean score of its runs, ``grade``
    that mean's grade and ``passed`` its verdict over the runs; the figures and sub-scores are
    those of the run given (the last one)."""

    def sub(self, dimension: str) -> float | None:
        entry = self.dimensions.get(dimension)
        return None if entry is None or entry.sub_score is None else float(entry.sub_score)


@dataclass(frozen=True)
class ScenarioVerdict:
    scenario: str
    title: str
    ranking: tuple[Cell, ...]
    """The scored runs, best first: overall score, then fewer failing dimensions."""
    why: str


@dataclass(frozen=True)
class Comparison:
    scenarios: tuple[str, ...]
    designs: tuple[str, ...]
    cells: Mapping[tuple[str, str], Cell]
    verdicts: tuple[ScenarioVerdict, ...]
    costs: Mapping[str, tuple[float | None, str]] = field(default_factory=dict)
    """Steady-state cost per hour of each design, and its currency."""
    titles: Mapping[str, str] = field(default_factory=dict)
    """Design titles."""


def _cell(result: Result) -> Cell:
    run, score, repeat = result.run, result.score, result.repeat
    overall = None if score.overall is None else float(score.overall)
    shown = "—" if score.grade is None else str(score.grade)
    if repeat is not None:
        overall = repeat.mean_score
        shown = "—" if overall is None else grade(overall).value
    return Cell(
        scenario=str(run.scenario.id),
        design=str(run.design.id),
        overall=overall,
        grade=shown,
        passed=bool(score.passed) if repeat is None else repeat.verdict == "pass",
        repeat=repeat,
        capped=None if score.cap is None else score.cap.reason,
        dimensions={d.name: d for d in score.dimensions},
        figures=result.figures,
        run_dir=run.dir or "",
        exit_code=run.exit_code,
        reason=run.reason or "",
        discovered=tuple(
            f"{d.host} ({d.provider or 'unknown operator'}, {d.jurisdiction}, {d.sovereignty})"
            for d in result.discovered
        ),
        unreached=tuple(f"{p.index} {p.kind}" for p in result.phases if p.reached is False),
    )


def _rank_key(cell: Cell) -> tuple[float, int, str]:
    failing = sum(1 for d in cell.dimensions.values() if not d.passed)
    return (-(cell.overall or 0.0), failing, cell.design)


def _score(cell: Cell) -> float:
    assert cell.overall is not None, "only scored runs are ranked"
    return cell.overall


def _fmt_measured(entry: Dimension) -> str:
    value, unit = entry.measured, entry.unit
    if value is None:
        return "not measured"
    if unit == "ratio":
        return f"{float(value) * 100:.1f} %"
    if unit == "s":
        return fmt_seconds(value)  # a 49 ms p95 read "0.0 s"
    return f"{value:g}" if isinstance(value, float) else str(value)


def _why(ranking: Sequence[Cell], unscored: Sequence[Cell]) -> str:
    if unscored:
        return (
            _why_scored(ranking)
            + " Not scored: "
            + "; ".join(f"{c.design} ({c.reason or 'stopped before its plan'})" for c in unscored)
            + "."
        )
    return _why_scored(ranking)


def _why_scored(ranking: Sequence[Cell]) -> str:
    if not ranking:
        return "No design was scored."
    best = ranking[0]
    if len(ranking) == 1:
        return f"{best.design} is the only design scored: {best.grade} ({_score(best):.0f})."
    second = ranking[1]
    tied = [c.design for c in ranking if abs(_score(c) - _score(best)) < 0.05]
    if len(tied) > 2:
        return f"{len(tied)} designs tie at {_score(best):.0f}: {', '.join(tied)}."
    if abs(_score(best) - _score(second)) < 0.05:
        return f"{best.design} and {second.design} tie at {_score(best):.0f}."
    gaps: list[tuple[float, str]] = []
    for name in DIMENSIONS:
        mine, theirs = best.sub(name), second.sub(name)
        if mine is None or theirs is None or mine - theirs < 1.0:
            continue
        a, b = best.dimensions[name], second.dimensions[name]
        gaps.append((mine - theirs, f"{name} {_fmt_measured(a)} vs {_fmt_measured(b)}"))
    gaps.sort(reverse=True)
    reasons = "; ".join(text for _, text in gaps[:3]) or "small differences across dimensions"
    cap = f" ({second.design}'s score is capped: {second.capped})" if second.capped else ""
    return (
        f"{best.design} ({best.grade}, {_score(best):.0f}) beats {second.design} "
        f"({second.grade}, {_score(second):.0f}){cap}: {reasons}."
    )


def build_comparison(results: Sequence[Result]) -> Comparison:
    """Raises `ValueError` when `results` is empty. A run that was not scored is a cell of its own,
    out of the ranking."""
    if not results:
        raise ValueError("nothing to compare: no run result given")
    cells: dict[tuple[str, str], Cell] = {}
    scenario_titles: dict[str, str] = {}
    design_titles: dict[str, str] = {}
    costs: dict[str, tuple[float | None, str]] = {}
    for result in results:
        cell = _cell(result)
        cells[(cell.scenario, cell.design)] = cell
        scenario_titles.setdefault(cell.scenario, result.run.scenario.title or "")
        design_titles.setdefault(cell.design, result.run.design.title or "")
        cost = result.figures.cost
        if cost is not None:
            costs[cell.design] = (cost.steady_per_hour, cost.currency)
        else:
            costs.setdefault(cell.design, (None, ""))
    scenarios = tuple(dict.fromkeys(c.scenario for c in cells.values()))
    designs = tuple(dict.fromkeys(c.design for c in cells.values()))
    verdicts = []
    for scenario in scenarios:
        mine = [c for c in cells.values() if c.scenario == scenario]
        ranking = tuple(sorted((c for c in mine if c.overall is not None), key=_rank_key))
        unscored = [c for c in mine if c.overall is None]
        verdicts.append(
            ScenarioVerdict(scenario, scenario_titles[scenario], ranking, _why(ranking, unscored))
        )
    return Comparison(scenarios, designs, cells, tuple(verdicts), costs, design_titles)


def _figure(cell: Cell) -> str:
    f = cell.figures
    parts = []
    if f.success_ratio is not None:
        parts.append(f"avail {f.success_ratio * 100:.1f} %")
    if f.recovered is False:
        parts.append("never recovered")
    elif f.rto is not None:
        parts.append(f"RTO {f.rto:.1f} s")
    if f.latency.p95 is not None:
        parts.append(f"p95 {f.latency.p95 * 1000:.0f} ms")
    if f.rpo is not None and f.rpo.lost:
        parts.append(f"{f.rpo.lost} writes lost")
    if f.sovereignty_violations:
        parts.append(f"{f.sovereignty_violations} violations")
    if cell.discovered:
        parts.append(f"outside the design: {'; '.join(cell.discovered)}")
    if cell.unreached:
        parts.append(f"reached no traffic: phase {', '.join(cell.unreached)}")
    return ", ".join(parts)


def render_compare_markdown(comparison: Comparison) -> str:
    lines = ["# Design comparison", ""]
    head = "| scenario | " + " | ".join(comparison.designs) + " |"
    lines += [head, "|---|" + "---|" * len(comparison.designs)]
    for scenario in comparison.scenarios:
        row = [scenario]
        for design in comparison.designs:
            cell = comparison.cells.get((scenario, design))
            if cell is None:
                row.append("—")
                continue
            if cell.overall is None:
                row.append(f"❌ **not scored**<br>{md_text(cell.reason or 'stopped before its plan')}")
                continue
            if cell.repeat is not None:
                mark = MARKS.get(cell.repeat.verdict, "❔")
                head = f"{mark} **{cell.grade} {cell.overall:.0f}** mean, {verdict_text(cell.repeat)}"
                row.append(f"{head}<br>last run: {_figure(cell)}")
                continue
            mark = "✅" if cell.passed else "❌"
            row.append(f"{mark} **{cell.grade} {cell.overall:.0f}**<br>{_figure(cell)}")
        lines.append("| " + " | ".join(row) + " |")
    cost_row = ["steady-state cost / h"]
    for design in comparison.designs:
        value, currency = comparison.costs.get(design, (None, ""))
        cost_row.append("—" if value is None else f"{value:.2f} {currency}")
    lines.append("| " + " | ".join(cost_row) + " |")
    lines += ["", "## Who wins, and why", ""]
    for verdict in comparison.verdicts:
        lines.append(f"- **{verdict.scenario}** — {md_text(verdict.why)}")
    lines += _repeats_markdown(comparison)
    lines += ["", "## Sub-scores", ""]
    lines.append("| scenario | design | " + " | ".join(DIMENSIONS) + " |")
    lines.append("|---|---|" + "---:|" * len(DIMENSIONS))
    for scenario in comparison.scenarios:
        for design in comparison.designs:
            cell = comparison.cells.get((scenario, design))
            if cell is None:
                continue
            subs = [("—" if (v := cell.sub(d)) is None else f"{v:.0f}") for d in DIMENSIONS]
            lines.append(f"| {scenario} | {design} | " + " | ".join(subs) + " |")
    lines += ["", "## Figures", ""]
    lines.append(
        "| scenario | design | success | RTO | correct | served wrong | correctness RTO | fail over "
        "| failback | p95 | writes lost | violations | run ended |"
    )
    lines.append("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|")
    for scenario in comparison.scenarios:
        for design in comparison.designs:
            cell = comparison.cells.get((scenario, design))
            if cell is not None:
                lines.append(f"| {scenario} | {design} | " + " | ".join(_figure_row(cell)) + " |")
    return "\n".join(lines) + "\n"


def _repeats_markdown(comparison: Comparison) -> list[str]:
    """The repeated items: each dimension's verdict and 95 % interval over the runs."""
    cells = [c for c in comparison.cells.values() if c.repeat is not None]
    if not cells:
        return []
    lines = ["", "## Over repeated runs", ""]
    lines += ["| scenario | design | verdict | mean score | dimensions: verdict, 95 % interval |"]
    lines += ["|---|---|---|---:|---|"]
    for cell in cells:
        view = compute_repeat_view(cell.repeat)
        if view is None or cell.repeat is None:
            continue
        dims = "<br>".join(f"{MARKS.get(r.verdict, '')} {r.name} {r.verdict} {r.interval}" for r in view.rows)
        title = f"{MARKS.get(cell.repeat.verdict, '')} {verdict_text(cell.repeat)}"
        lines.append(f"| {cell.scenario} | {cell.design} | {title} | {view.mean_score} | {dims} |")
    lines += ["", "A repeated item's figures and sub-scores below are its last run's; its score is the mean."]
    return lines


def _seconds(value: float | None) -> str:
    return "—" if value is None else f"{value:.1f} s"


def _figure_row(cell: Cell) -> list[str]:
    f = cell.figures
    rto = "never" if f.recovered is False else _seconds(f.rto)
    p95 = f.latency.p95
    lost = "—" if f.rpo is None else f"{f.rpo.lost} of {f.rpo.acknowledged}"
    ended = "—" if cell.exit_code is None else f"exit {cell.exit_code}: {cell.reason}"
    violations = f.sovereignty_violations
    c = f.correctness
    return [
        "—" if f.success_ratio is None else f"{f.success_ratio * 100:.2f} %",
        rto,
        "—" if c.impact is None else f"{c.impact * 100:.2f} %",
        "—" if c.wrong_share is None else f"{c.wrong_share * 100:.2f} % ({c.wrong} of {c.graded})",
        "never" if c.recovered is False else _seconds(c.rto),
        failover_value(f),
        failback_value(f)[0],
        "—" if p95 is None else f"{p95 * 1000:.0f} ms",
        lost,
        "—" if violations is None else str(violations),
        ended.replace("|", "/"),
    ]


BEGIN_MARK = "<!-- bascule compare: begin (generated; edit around it, not inside) -->"
END_MARK = "<!-- bascule compare: end -->"


def splice_generated(document: str, generated: str) -> str:
    """`document` with what lies between its `BEGIN_MARK` and `END_MARK` lines replaced by
    `generated`, its headings one level down (a comparison inside a page of its own). Raises
    `ValueError` when the markers are missing or out of order."""
    begin, end = document.find(BEGIN_MARK), document.find(END_MARK)
    if begin < 0 or end < 0 or end < begin:
        raise ValueError(f"the document has no '{BEGIN_MARK}' … '{END_MARK}' section to fill")
    body = "\n".join("#" + line if line.startswith("#") else line for line in generated.strip().splitlines())
    return document[: begin + len(BEGIN_MARK)] + "\n\n" + body + "\n\n" + document[end:]
