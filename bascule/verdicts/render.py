"""The repeat summary as Markdown (``repeat.md``, and a section of ``suite.md``) and as the lines
``bascule run --repeat`` prints. Pure."""

from __future__ import annotations

import math

from bascule.verdicts.model import DimensionVerdict, FigureChange, Interval, RepeatSummary, Verdict

__all__ = ["render_flaky_lines", "render_repeat_lines", "render_repeat_markdown", "show_value"]

_MARK = {
    Verdict.PASS: "✅ pass",
    Verdict.FAIL: "❌ fail",
    Verdict.INCONCLUSIVE: "❔ inconclusive",
    Verdict.UNMEASURED: "⚪ unmeasured",
}


def show_value(value: float | None, unit: str) -> str:
    if value is None:
        return "—"
    if math.isinf(value):
        return "never" if value > 0 else "−∞"
    if unit == "ratio":
        return f"{value * 100:.2f} %"
    if unit == "s":
        return f"{value:.2f} s"
    return f"{value:.4g}"


def _interval(interval: Interval | None, unit: str) -> str:
    if interval is None:
        return "—"
    shown = "" if interval.of == "margin" else unit
    text = f"[{show_value(interval.low, shown)}, {show_value(interval.high, shown)}]"
    return text + (" (margin)" if interval.of == "margin" else "")


def _runs(d: DimensionVerdict) -> str:
    unmeasured = len(d.values) - d.passed_runs - d.failed_runs
    text = f"{d.passed_runs}✓ {d.failed_runs}✗"
    return text + (f" {unmeasured}—" if unmeasured else "")


def render_repeat_markdown(summary: RepeatSummary, *, heading: str = "##") -> str:
    """The table of verdicts, one row per dimension, then the flaky dimensions and the notes."""
    counted = sum(1 for r in summary.runs if r.counted)
    flaky = " · ⚠️ flaky" if summary.flaky else ""
    lines = [
        f"{heading} {_MARK[summary.verdict]}{flaky} — {summary.scenario} on {summary.design}: "
        f"{counted} of {summary.repeats} runs judged (exit {summary.exit_code})",
        "",
        summary.reason + ".",
        "",
        "| dimension | verdict | mean | 95 % interval | objective | runs ✓ ✗ — | flaky | why |",
        "|---|---|---:|---|---:|---|---|---|",
    ]
    for d in summary.dimensions:
        weight = "" if d.counts else " (weight 0)"
        lines.append(
            f"| {d.name}{weight} | {_MARK[d.verdict]} | {show_value(d.mean, d.unit)} | "
            f"{_interval(d.interval, d.unit)} | {show_value(d.objective, d.unit)} | {_runs(d)} | "
            f"{d.flips or '—'} | {d.reason.replace('|', '/')} |"
        )
    lines += ["", "| run | exit | score | grade | reason | directory |", "|---:|---:|---:|---|---|---|"]
    for r in summary.runs:
        score = "—" if r.score is None else f"{r.score:.1f}"
        lines.append(
            f"| {r.run} | {r.exit_code} | {score} | {r.grade or '—'} | {r.reason.replace('|', '/')} | "
            f"{r.dir or '—'} |"
        )
    if summary.baseline is not None:
        lines += ["", f"**Against the baseline** `{summary.baseline_source}`:", ""]
        lines += ["| dimension | now | baseline | change |", "|---|---|---|---|"]
        lines += [_baseline_row(c) for c in summary.baseline]
        lines += [
            "",
            "Below 8 runs, each side's interval is at least as wide as Student's t interval of its "
            "mean, so that a few runs are not read as a change; a side whose runs show no spread is "
            "given the other's.",
        ]
    lines += _design_lines(summary)
    if summary.flaky_dimensions:
        lines += ["", "**Flaky** (verdicts differ across runs):"]
        lines += [f"- {d.name}: {d.flips}" for d in summary.flaky_dimensions]
    lines += [f"\n> {note}" for note in summary.notes]
    return "\n".join(lines) + "\n"


def _baseline_row(c: FigureChange) -> str:
    if c.regressed:
        mark = "❌ regressed"
    elif c.improved:
        mark = "✅ improved"
    else:
        mark = "❔ too few runs to tell" if c.too_few_runs else "= within noise"
    runs = f"{c.baseline_runs} run{'s' if c.baseline_runs != 1 else ''}"
    lent = {"now": (" (spread of the baseline)", ""), "baseline": ("", ", spread of the runs now")}
    to_now, to_baseline = lent.get(c.spread_lent_to, ("", ""))
    return (
        f"| {c.name} | [{show_value(c.now_low, c.unit)}, {show_value(c.now_high, c.unit)}]{to_now} | "
        f"[{show_value(c.baseline_low, c.unit)}, {show_value(c.baseline_high, c.unit)}] "
        f"({runs}{to_baseline}) | {mark} |"
    )


def _design_lines(summary: RepeatSummary) -> list[str]:
    changes, mine = summary.design_changes, summary.design_file
    if summary.baseline is None or changes is None or mine is None:
        return []
    if not changes:
        return ["", f"Same design file as the baseline: `{mine.path}` (sha256 {mine.sha256[:12]})."]
    lines = ["", f"**Design changes since the baseline** (`{mine.path}`, now sha256 {mine.sha256[:12]}):", ""]
    return lines + [f"- `{change}`" for change in changes]


def render_flaky_lines(summary: RepeatSummary) -> list[str]:
    """``name: how often it flipped`` for each flaky dimension, and the runs' exit codes when those
    differ without a dimension flipping (a hypothesis failing after rollback in some runs)."""
    lines = [f"{d.name}: {d.flips}" for d in summary.flaky_dimensions]
    codes = sorted({r.exit_code for r in summary.runs if r.counted})
    if summary.flaky and not lines and len(codes) > 1:
        lines.append(f"the runs' exit codes differ: {', '.join(str(c) for c in codes)}")
    return lines


def render_repeat_lines(summary: RepeatSummary) -> list[str]:
    """Plain lines for the terminal: the verdict, one line per dimension, the notes."""
    counted = sum(1 for r in summary.runs if r.counted)
    lines = [
        f"repeat: {summary.verdict.value}{' (flaky)' if summary.flaky else ''} over {counted} of "
        f"{summary.repeats} runs — {summary.reason} (exit {summary.exit_code})"
    ]
    for d in summary.dimensions:
        flips = f" · flaky: {d.flips}" if d.flaky else ""
        lines.append(f"  {d.name:<13}{d.verdict.value:<14}{d.reason}{flips}")
    for c in summary.baseline or ():
        lines.append(f"  baseline: {c.name:<13}{c.reason}")
    if summary.baseline is not None and summary.design_changes is not None:
        changed = "; ".join(summary.design_changes) or "none (the same design file)"
        lines.append(f"  baseline: design changes: {changed}")
    lines += [f"  note: {note}" for note in summary.notes]
    return lines
