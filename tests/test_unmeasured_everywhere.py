"""A dimension judged over zero requests is "unmeasured" in every output — result.json, summary.md,
report.html, JUnit, compare.md and compare.html — and never shown as a pass; the run does not pass."""

from __future__ import annotations

import json
import re
from dataclasses import replace

from html_check import parse
from journal_factory import JournalSpec, build_records, one_phase_scenario, reference_design
from rich.console import Console

from bascule.metrics import compute_metrics
from bascule.reports.compare import build_comparison, render_compare_markdown
from bascule.reports.compare_html import render_compare_html
from bascule.reports.html import render_html
from bascule.reports.junit import render_junit
from bascule.reports.markdown import render_markdown
from bascule.reports.model import Result, dump_result
from bascule.reports.result import build_result
from bascule.reports.terminal import render_terminal
from bascule.score import score
from tests.test_score import healthy


def blind_result() -> Result:
    """Every figure measured and met, but no request's path known: sovereignty judged over none."""
    spec = JournalSpec(reference_design(), one_phase_scenario(), healthy, length=20.0)
    metrics = compute_metrics(build_records(spec))
    metrics = replace(
        metrics,
        sovereignty_judged=False,
        notes={**metrics.notes, "sovereignty": "no request's path was known"},
    )
    return build_result(metrics, score(metrics, metrics.objectives, metrics.weights), run_dir="runs/blind")


def test_json_says_unmeasured_and_not_passed() -> None:
    document = json.loads(dump_result(blind_result()))
    (sovereignty,) = [d for d in document["score"]["dimensions"] if d["name"] == "sovereignty"]
    assert sovereignty["passed"] is None and sovereignty["sub_score"] is None
    assert sovereignty["explanation"].startswith("Not measured: no request's path was known")
    assert document["score"]["passed"] is False and "sovereignty" in document["score"]["unmeasured"]


def test_markdown_shows_no_pass_for_it() -> None:
    text = render_markdown(blind_result())
    assert text.startswith("## ❌ FAIL")
    (row,) = [line for line in text.splitlines() if line.startswith("| sovereignty")]
    assert "✅" not in row and "Not measured" in row


def test_html_shows_no_pass_for_it() -> None:
    page = render_html(blind_result())
    parse(page)  # well formed
    row = re.search(r'<td class="dim-name">sovereignty[^<]*</td>.*?</tr>', page, re.S)
    assert row is not None
    assert "✓" not in row.group(0) and "not measured" in row.group(0)
    assert "bar-pass" not in row.group(0)
    assert 'class="verdict fail"' in page


def test_junit_fails_the_case() -> None:
    xml = render_junit([blind_result()])
    assert 'failures="1"' in xml and "<failure" in xml
    # None seen is not none: the count a dashboard reads from the properties is null, not 0.
    assert '<property name="bascule.sovereignty_violations" value="null"' in xml


def test_compare_shows_no_pass_for_it() -> None:
    comparison = build_comparison([blind_result()])
    markdown = render_compare_markdown(comparison)
    assert "❌" in markdown and "✅" not in markdown
    page = render_compare_html(comparison)
    assert "✗ FAIL" in page and "✓ PASS" not in page


def test_compare_shows_a_run_that_was_not_scored_and_ranks_the_others() -> None:
    """A run stopped before its plan (a guardrail in the warm-up) is a cell of its own: 'not scored'
    with its reason, out of the ranking — it once made `bascule compare` exit 2."""
    from journal_factory import JournalSpec as Spec

    scored = blind_result()
    spec = Spec(reference_design(), one_phase_scenario(), healthy, length=20.0, exit_code=3)
    records = [
        r for r in build_records(spec) if r["type"] not in ("plan-started", "fault-applied", "fault-reverted")
    ]
    for r in records:
        if r["type"] == "run-ended":
            r["reason"] = "guardrail sovereignty: 5 violations | <b>seen</b>"
        if r["type"] == "run-started":
            r["design"] = {**r["design"], "id": "other-design"}
    metrics = compute_metrics(records)
    unscored = build_result(metrics, score(metrics, metrics.objectives, metrics.weights), run_dir="runs/x")
    assert unscored.score.overall is None
    comparison = build_comparison([scored, unscored])
    (verdict,) = comparison.verdicts
    assert [c.design for c in verdict.ranking] == [scored.run.design.id]
    assert "Not scored: other-design (guardrail sovereignty: 5 violations" in verdict.why
    markdown = render_compare_markdown(comparison)
    # A reason (a probe's error, since it says why) cannot end the table's cell nor write HTML.
    assert "**not scored**<br>guardrail sovereignty: 5 violations \\| &lt;b&gt;seen&lt;/b&gt;" in markdown
    assert "not scored" in render_compare_html(comparison)
    # The terminal says it as summary.md does, not "FAIL · —/100, grade —".
    console = Console(width=120, record=True, color_system=None)
    console.print(render_terminal(unscored))
    text = console.export_text()
    assert text.startswith("FAIL · not scored — ")
    # Nothing of the plan ran and nothing was judged: the reason, not a table of dashes above it.
    assert "not scored: guardrail sovereignty: 5 violations" in text and "sub-score" not in text


def test_the_terminal_summary_shows_no_pass_for_it() -> None:
    console = Console(width=120, record=True, color_system=None)
    console.print(render_terminal(blind_result()))
    text = console.export_text()
    assert text.startswith("FAIL ·")
    (row,) = [line for line in text.splitlines() if line.startswith("sovereignty ")]
    assert "unmeasured" in row and "pass" not in row
    (other,) = [line for line in text.splitlines() if line.startswith("availability ")]
    assert " pass " in other
    assert any(line.startswith("RTO ") for line in text.splitlines())
