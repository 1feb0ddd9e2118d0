"""`bascule suite --repeat N`: every scenario × design run N times (fresh stack each) and judged
over its runs (docs/repeats.md): ``<out>/<scenario>--<design>/run-K/`` with the item's
``repeat.json`` and ``repeat.md`` beside them, then ``suite.md`` (a verdict per item, the flaky ones
apart), ``suite.json`` and ``junit.xml`` (flaky runs as Surefire's ``flakyFailure`` /
``rerunFailure``) in `out`.

The suite's exit code is the most serious of its items': 4, 3, then 1 (an item failed, was
inconclusive or unmeasured), then 0.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bascule.ci.repeat import RepeatOutcome, final_document, run_repeated
from bascule.ci.results import RunResult, run
from bascule.ci.suite import SuiteCase, suite_exit_code
from bascule.reports.junit_repeat import render_junit_repeats
from bascule.rundir import prepare_run_directory
from bascule.targets.local.shared import needs_fork_server, shared_fork_server
from bascule.verdicts import RepeatSummary, Verdict
from bascule.verdicts.render import render_flaky_lines

__all__ = ["SuiteRepeatOutcome", "render_suite_repeat_markdown", "run_suite_repeated"]

_MARK = {
    Verdict.PASS: "✅ pass",
    Verdict.FAIL: "❌ fail",
    Verdict.INCONCLUSIVE: "❔ inconclusive",
    Verdict.UNMEASURED: "⚪ unmeasured",
}


@dataclass(frozen=True)
class SuiteRepeatOutcome:
    exit_code: int
    items: tuple[tuple[SuiteCase, RepeatOutcome], ...]
    files: tuple[Path, ...]


def _row(case: SuiteCase, summary: RepeatSummary) -> str:
    judged = sum(1 for r in summary.runs if r.counted)
    passed = sum(1 for r in summary.runs if r.counted and r.exit_code == 0)
    score = [r.score for r in summary.runs if r.counted and r.score is not None]
    mean = f"{sum(score) / len(score):.1f}" if score else "—"
    not_met = [d.name for d in summary.dimensions if d.counts and d.verdict is not Verdict.PASS]
    return (
        f"| {case.scenario_id} | {case.design_id} | {_MARK[summary.verdict]} | "
        f"{'⚠️ yes' if summary.flaky else 'no'} | {passed}/{judged} of {summary.repeats} | {mean} | "
        f"{', '.join(not_met) or '—'} | {summary.exit_code} |"
    )


def render_suite_repeat_markdown(items: Sequence[tuple[SuiteCase, RepeatSummary]], exit_code: int) -> str:
    """The suite's Markdown: the items' verdicts, then the flaky items and what flipped, then a
    closing note that counts what CI should look at."""
    counts = {v: sum(1 for _, s in items if s.verdict is v) for v in Verdict}
    repeats = max((s.repeats for _, s in items), default=0)
    head = "✅" if exit_code == 0 else "❌"
    lines = [
        f"## {head} bascule suite ×{repeats}: {counts[Verdict.PASS]}/{len(items)} passed (exit {exit_code})",
        "",
        "| scenario | design | verdict | flaky | runs passed | mean score | not shown met | exit |",
        "|---|---|---|---|---|---:|---|---:|",
        *(_row(case, summary) for case, summary in items),
    ]
    flaky = [(case, s) for case, s in items if s.flaky]
    if flaky:
        lines += ["", "### ⚠️ Flaky (verdicts differ across runs)", ""]
        for case, summary in flaky:
            flips = "; ".join(render_flaky_lines(summary))
            lines.append(
                f"- **{case.scenario_id}** on **{case.design_id}** ({summary.verdict.value}): {flips}"
            )
    regressed = [(case, s) for case, s in items if s.regressions]
    if regressed:
        lines += ["", "### ❌ Regressions against the baseline (beyond noise)", ""]
        for case, summary in regressed:
            what = "; ".join(f"{c.name} {c.reason}" for c in summary.regressions)
            lines.append(f"- **{case.scenario_id}** on **{case.design_id}**: {what}")
            if summary.design_changes:
                lines.append("  - design changes since the baseline:")
                lines += [f"    - `{change}`" for change in summary.design_changes]
            elif summary.design_changes == ():
                lines.append("  - the same design file as the baseline: the change is not in the design")
    lines += ["", "Each item's table: `<scenario>--<design>/repeat.md`."]
    closing = [f"{counts[v]} {v.value}" for v in Verdict if counts[v]]
    unsure = [f"{c.scenario_id} on {c.design_id}" for c, s in items if s.verdict is Verdict.INCONCLUSIVE]
    note = f"> {', '.join(closing)}; {len(flaky)} flaky."
    if any(s.baseline_source for _, s in items):
        note += f" {len(regressed)} regressed against the baseline."
        untold = [
            f"{c.scenario_id} on {c.design_id} ({', '.join(f.name for f in s.too_few_runs)})"
            for c, s in items
            if s.too_few_runs
        ]
        if untold:
            note += f" Too few runs to tell against the baseline (not flagged): {'; '.join(untold)}."
    if unsure:
        note += f" Inconclusive (the interval straddles an objective; exit 1): {'; '.join(unsure)}."
    if flaky:
        shaky = [f"{c.scenario_id} on {c.design_id} ({s.verdict.value})" for c, s in flaky]
        note += f" Flaky (verdicts differ across runs): {'; '.join(shaky)}."
    notes = sorted({n for _, s in items for n in s.notes})
    lines += ["", note, *(f"> {n}" for n in notes[:1])]
    return "\n".join(lines) + "\n"


def run_suite_repeated(
    cases: Sequence[SuiteCase],
    out_dir: Path,
    repeats: int,
    *,
    min_score: float | None = None,
    stack_timeout: float | None = None,
    baseline: Path | None = None,
    otlp_timeline: str | None = None,
    on_start: Callable[[int, SuiteCase], None] | None = None,
    on_run: Callable[[int, SuiteCase, int, RunResult], None] | None = None,
    on_done: Callable[[int, SuiteCase, RepeatSummary], None] | None = None,
    say: Callable[[str], None] | None = None,
) -> SuiteRepeatOutcome:
    """Run every case `repeats` times, judge each, then write ``suite.md``, ``suite.json`` and
    ``junit.xml`` into `out_dir`. An item whose run did not complete stops that item's repeats
    (an interrupt: exit 3 — and the suite stops there too). All the runs share one fork server
    (`shared_fork_server`, its ledger in `out_dir`); `say` is told its PID."""
    prepare_run_directory(out_dir, fresh=True, within=True)
    done: list[tuple[SuiteCase, RepeatOutcome]] = []
    with shared_fork_server(out_dir, say=say, needed=needs_fork_server(c.design for c in cases)):
        for index, case in enumerate(cases):
            if on_start is not None:
                on_start(index, case)

            def run_once(k: int, run_dir: Path, case: SuiteCase = case) -> RunResult:
                return run(
                    case.scenario,
                    design=case.design,
                    out=run_dir,
                    min_score=min_score,
                    stack_timeout=stack_timeout,
                    otlp_timeline=otlp_timeline,
                )

            def ran(k: int, result: RunResult, index: int = index, case: SuiteCase = case) -> None:
                if on_run is not None:
                    on_run(index, case, k, result)

            outcome = run_repeated(
                run_once,
                repeats,
                out_dir / case.slug,
                min_score=min_score,
                baseline=baseline,
                design_file=case.design,
                on_done=ran,
            )
            done.append((case, outcome))
            if on_done is not None:
                on_done(index, case, outcome.summary)
            if any(r.reason.startswith("interrupted by") for r in outcome.results):
                break
    code = suite_exit_code(o.exit_code for _, o in done)
    summary: dict[str, Any] = {
        "schema": "bascule.suite/1",
        "exit_code": code,
        "repeat": repeats,
        "runs": [
            {
                "scenario": case.scenario_id,
                "design": case.design_id,
                "exit_code": o.exit_code,
                "reason": o.summary.reason,
                "verdict": o.summary.verdict.value,
                "flaky": o.summary.flaky,
                "flaky_dimensions": {d.name: d.flips for d in o.summary.flaky_dimensions},
                "regressions": {c.name: c.reason for c in o.summary.regressions},
                "design_changes": None
                if o.summary.design_changes is None
                else list(o.summary.design_changes),
                "design_file": None
                if o.summary.design_file is None
                else {"path": o.summary.design_file.path, "sha256": o.summary.design_file.sha256},
                "repeat_dir": str(out_dir / case.slug),
                "run_dirs": [str(r.run_dir) for r in o.results],
            }
            for case, o in done
        ],
    }
    junit_items = [(o.summary, [final_document(r) for r in o.results]) for _, o in done]
    files = {
        out_dir / "suite.md": render_suite_repeat_markdown([(c, o.summary) for c, o in done], code),
        out_dir / "suite.json": json.dumps(summary, indent=2, ensure_ascii=False) + "\n",
        out_dir / "junit.xml": render_junit_repeats(junit_items, suite_name="bascule suite"),
    }
    for path, text in files.items():
        path.write_text(text, encoding="utf-8")
    return SuiteRepeatOutcome(code, tuple(done), tuple(files))
