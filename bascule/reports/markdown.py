"""`summary.md`: one run in GitHub-flavoured Markdown, short enough for a pull-request comment or a
CI step summary — the verdict line, the score's dimensions, any cap, the phase timeline, what to
fix first, the key figures and the correct answers over time. Pure: `render_markdown(result) -> str`.

Text from the document is escaped so that a name cannot break a table, open a link or inject HTML
into the page that shows the summary."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from bascule.reports import _summary as summary
from bascule.reports._correctness import compute_correctness_rows
from bascule.reports._format import DASH, as_float, as_str, fmt_percent, fmt_seconds, md_text
from bascule.reports._repeat import MARKS, compute_repeat_view
from bascule.reports.model import Result

__all__ = ["render_markdown"]

_FINDING_PREFIX = {
    summary.FindingKind.RECOMMENDATION: "🔧",
    summary.FindingKind.SOVEREIGNTY: "🛂",
    summary.FindingKind.DISCOVERED: "🔎",
    summary.FindingKind.SPANS: "📡",
    summary.FindingKind.PLAN: "📋",
}


_md = md_text


def _url(link: str) -> str:
    # Characters that would end the link destination or the Markdown around it are percent-encoded.
    for char, code in (("(", "%28"), (")", "%29"), ("<", "%3C"), (">", "%3E"), (" ", "%20"), ("|", "%7C")):
        link = link.replace(char, code)
    return link


def _shown(link: str) -> str:
    return link.split("://", 1)[-1].rstrip("/")


def _table(header: Sequence[str], rows: Iterable[Sequence[str]], right: Iterable[int] = ()) -> list[str]:
    aligned = set(right)
    rule = ["---:" if i in aligned else "---" for i in range(len(header))]
    lines = ["| " + " | ".join(header) + " |", "| " + " | ".join(rule) + " |"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return lines


def _title(result: Result) -> list[str]:
    h = summary.compute_headline(result)
    mark = {"PASS": "✅", "FAIL": "❌"}.get(h.verdict, "❔")
    scored = "not scored" if h.overall is None else f"{_md(h.overall_text)}/100, grade {_md(h.grade)}"
    if h.unmeasured:
        scored += f" · {_md(h.unmeasured)}"
    lines = [
        f"## {mark} {h.verdict} · {scored} — {_md(h.scenario_id)} on {_md(h.design_id)}",
        "",
    ]
    run = result.run
    about = []
    if h.scenario_title:
        about.append(f"**{_md(h.scenario_title)}**")
    run_length = as_float(run.run_length)
    if run_length is not None:
        about.append(f"replayed in {fmt_seconds(run_length)}")
    if h.design_title:
        about.append(f"against *{_md(h.design_title)}*")
    sentence = " ".join(about)
    exit_code = run.exit_code
    reason = as_str(run.reason)
    if exit_code is not None:
        sentence += f" · exit {exit_code}" + (f": {_md(reason)}" if reason else "")
    links = summary.safe_links(result)
    if links:
        sentence += " · source: " + ", ".join(f"[{_md(_shown(link))}]({_url(link)})" for link in links)
    if sentence:
        lines += [sentence, ""]
    return lines


def _repeat(result: Result) -> list[str]:
    view = compute_repeat_view(result.repeat)
    if view is None:
        return []
    rows = [
        [
            _md(r.name) + ("" if r.counts else " (weight 0)"),
            f"{MARKS.get(r.verdict, '')} {_md(r.verdict)}",
            _md(r.mean),
            _md(r.interval),
            _md(r.objective),
            _md(r.runs),
            _md(r.flips),
        ]
        for r in view.rows
    ]
    header = ["dimension", "verdict", "mean", "95 % interval", "objective", "runs ✓ ✗ —", "flaky"]
    lines = [
        f"### Over the repeated runs: {_md(view.title)}",
        "",
        f"{_md(view.reason)}. Mean score {_md(view.mean_score)}.",
        "",
    ]
    lines += [*_table(header, rows, right=(2, 4)), ""]
    lines += [f"> {_md(note)}" for note in view.notes]
    return [*lines, "", "This run's own figures follow; the repeat's table is `../repeat.md`.", ""]


def _dimensions(result: Result) -> list[str]:
    rows = []
    for d in summary.compute_dimension_rows(result):
        status = "" if d.passed is None else (" ✅" if d.passed else " ❌")
        rows.append(
            [
                f"{_md(d.name)}{status}",
                _md(d.measured),
                _md(d.objective),
                _md(d.sub_score_text),
                _md(d.weight),
                _md(d.why) or DASH,
            ]
        )
    if not rows:
        return []
    header = ["dimension", "measured", "objective", "sub-score", "weight", "why"]
    return ["### Score", "", *_table(header, rows, right=(1, 2, 3, 4)), ""]


def _cap(result: Result) -> list[str]:
    cap = summary.compute_cap(result)
    return [f"**Cap:** {_md(cap)}", ""] if cap else ["No cap applied to the overall score.", ""]


def _unreached(result: Result) -> list[str]:
    return [line for sentence in summary.compute_unreached(result) for line in (f"> ⚠️ {_md(sentence)}", "")]


def _phases(result: Result) -> list[str]:
    rows = [
        [
            _md(r.index),
            _md(r.name) or DASH,
            _md(r.kind),
            _md(r.target) or DASH,
            _md(r.real),
            _md(r.planned),
            _md(r.actual),
            _md(r.success),
            _md(r.p95),
            _md(r.reached),
        ]
        for r in summary.compute_phase_rows(result)
    ]
    if not rows:
        return []
    real = "incident time (UTC)" if result.run.scenario.started_at else "incident time"
    header = [
        "#",
        "phase",
        "kind",
        "target",
        real,
        "run time planned",
        "run time actual",
        "success",
        "p95",
        "traffic reached",
    ]
    return ["### Phases", "", *_table(header, rows, right=(0, 5, 6, 7, 8)), ""]


def _findings(result: Result) -> list[str]:
    findings = summary.compute_findings(result)
    if not findings:
        return []
    lines = ["### Top findings", ""]
    for n, f in enumerate(findings, start=1):
        subject = f"**{_md(f.subject)}**: " if f.kind is summary.FindingKind.RECOMMENDATION else ""
        lines.append(f"{n}. {_FINDING_PREFIX[f.kind]} {subject}{_md(f.text)}")
    return [*lines, ""]


def _figures(result: Result) -> list[str]:
    rows = [[f"**{_md(f.label)}**", _md(f.value), _md(f.note)] for f in summary.compute_figures(result)]
    return ["### Key figures", "", *_table(["figure", "value", "measured as"], rows), ""]


def _correct_answers(result: Result) -> list[str]:
    rows = [
        [
            _md(r.label),
            str(r.windows),
            fmt_percent(r.lowest),
            DASH if r.lowest_at is None else f"{r.lowest_at:.1f} s",
            str(r.wrong_windows),
            DASH if r.last_wrong is None else f"{r.last_wrong:.1f} s",
        ]
        for r in compute_correctness_rows(result)
    ]
    if not rows:
        why = result.figures.notes.get("correctness", "no golden answer was graded during the run")
        return ["### Correct answers over time", "", f"Unmeasured: {_md(why)}.", ""]
    header = [
        "answers written in",
        "windows graded",
        "lowest",
        "in the window from",
        "windows with a wrong answer",
        "the last from",
    ]
    return [
        "### Correct answers over time",
        "",
        "Graded golden answers per window (≤ 1 s, named by its start: a window may begin just "
        "before a fault), by the region whose llm wrote them "
        "(result.json: `series.correct_ratio`, `series.correct_region`).",
        "",
        *_table(header, rows, right=(1, 2, 3, 4, 5)),
        "",
    ]


def render_markdown(result: Result) -> str:
    """`summary.md` for one `bascule.result/1` document."""
    lines = [
        *_title(result),
        *_unreached(result),
        *_repeat(result),
        *_dimensions(result),
        *_cap(result),
        *_phases(result),
        *_findings(result),
        *_figures(result),
        *_correct_answers(result),
    ]
    version = as_str(result.run.bascule)
    directory = as_str(result.run.dir)
    footer = "<sub>bascule" + (f" {_md(version)}" if version else "")
    if directory:
        footer += f" · run {_md(directory)}"
    lines.append(footer + " · full report: report.html</sub>")
    return "\n".join(lines) + "\n"
