"""`bascule compare`'s pure core: results arranged by scenario and design, a winner per scenario
with the reasons in words, and the Markdown table."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from bascule.reports.compare import build_comparison, render_compare_markdown
from bascule.reports.model import parse_result

SAMPLE = Path(__file__).parent / "samples" / "result-sample.json"


def result(design: str, overall: float, grade: str, **dimension_changes: dict[str, Any]) -> dict[str, Any]:
    doc: dict[str, Any] = copy.deepcopy(json.loads(SAMPLE.read_text()))
    doc["run"]["design"]["id"] = design
    doc["score"]["overall"], doc["score"]["grade"] = overall, grade
    for entry in doc["score"]["dimensions"]:
        entry.update(dimension_changes.get(entry["name"], {}))
    doc["score"]["passed"] = all(d["passed"] for d in doc["score"]["dimensions"])
    return doc


def test_the_winner_is_explained_by_its_largest_gaps() -> None:
    good = result("active-passive-sovereign", 88.0, "B")
    bad = result(
        "single-region",
        31.0,
        "F",
        availability={"measured": 0.61, "sub_score": 0.0, "passed": False},
        recovery={"measured": None, "sub_score": 0.0, "passed": False},
        latency={"measured": 1.1, "sub_score": 60.0, "passed": True},
    )
    for entry in good["score"]["dimensions"]:
        if entry["name"] == "latency":
            entry.update(measured=0.049, sub_score=100.0)
    comparison = build_comparison([parse_result(r) for r in [bad, good]])
    (verdict,) = comparison.verdicts
    assert [c.design for c in verdict.ranking] == ["active-passive-sovereign", "single-region"]
    assert verdict.why.startswith("active-passive-sovereign (B, 88) beats single-region (F, 31)")
    assert "availability 99.3 % vs 61.0 %" in verdict.why
    assert "recovery" in verdict.why and "not measured" in verdict.why
    assert "latency 49 ms vs 1.1 s" in verdict.why  # a 49 ms p95 read "0.0 s"
    text = render_compare_markdown(comparison)
    assert "| scenario | single-region | active-passive-sovereign |" in text
    assert "❌ **F 31**" in text and "**B 88**" in text
    assert "steady-state cost / h" in text and "0.79 USD" in text


def test_a_capped_runner_up_is_said_to_be_capped() -> None:
    capped = result("us-fallback", 50.0, "D", sovereignty={"measured": 12, "sub_score": 0.0, "passed": False})
    capped["score"]["cap"] = {"at": 50, "reason": "12 sovereignty violations"}
    comparison = build_comparison(
        [parse_result(r) for r in [capped, result("active-passive-sovereign", 88.0, "B")]]
    )
    assert "capped: 12 sovereignty violations" in comparison.verdicts[0].why


def test_ties_and_lone_designs_are_said_plainly() -> None:
    assert (
        "only design" in build_comparison([parse_result(r) for r in [result("a", 70.0, "C")]]).verdicts[0].why
    )
    assert (
        "tie"
        in build_comparison([parse_result(r) for r in [result("a", 70.0, "C"), result("b", 70.0, "C")]])
        .verdicts[0]
        .why
    )
    three = build_comparison(
        [parse_result(r) for r in [result(n, 100.0, "A") for n in ("a", "b", "c")] + [result("d", 50.0, "D")]]
    )
    assert three.verdicts[0].why == "3 designs tie at 100: a, b, c."


def test_foreign_documents_are_refused() -> None:
    with pytest.raises(ValueError, match="nothing to compare"):
        build_comparison([])
    with pytest.raises(ValueError, match=r"bascule\.result/1"):
        build_comparison([parse_result({"schema": "other"})])


def test_the_figures_table_gives_rto_failover_writes_lost_and_how_each_run_ended() -> None:
    good = result("active-passive-sovereign", 88.0, "B")
    good["figures"].update(rto=6.8, time_to_failover=1.2, recovered=True)
    good["figures"]["rpo"] = {"acknowledged": 120, "lost": 2}
    good["figures"]["correctness"].update(graded=90, wrong=2, wrong_share=0.022222, rto=3.0, recovered=True)
    good["run"].update(exit_code=1, reason="objectives not met: durability")
    aborted = result("single-region", 0.0, "F")
    aborted["run"].update(exit_code=3, reason="guardrail sovereignty-violations: 12 | more")
    aborted["figures"].update(
        success_ratio=None,
        rto=None,
        recovered=None,
        time_to_failover=None,
        latency={},
        rpo=None,
        correctness={},
    )
    text = render_compare_markdown(build_comparison([parse_result(r) for r in [good, aborted]]))
    rows = [line for line in text.splitlines() if line.startswith(f"| {good['run']['scenario']['id']} |")]
    figures = [r for r in rows if "exit " in r]
    assert len(figures) == 2
    assert (
        "| 6.8 s | 97.80 % | 2.22 % (2 of 90) | 3.0 s | 1.2 s |" in figures[0]
        and "| 2 of 120 |" in figures[0]
    )
    assert figures[0].endswith("| exit 1: objectives not met: durability |")
    assert "| — | — | — | — | — | — |" in figures[1], "an aborted run measured nothing: dashes, not zeros"
    assert figures[1].endswith("| exit 3: guardrail sovereignty-violations: 12 / more |")


def test_the_comparison_goes_between_the_markers_of_a_page_and_nothing_else_changes() -> None:
    from bascule.reports.compare import BEGIN_MARK, END_MARK, splice_generated

    page = f"# Results\n\nA reading.\n\n{BEGIN_MARK}\nold table\n{END_MARK}\n\nMore reading.\n"
    filled = splice_generated(page, "# Design comparison\n\n| a |\n## Figures\n")
    assert filled.startswith("# Results\n\nA reading.\n\n" + BEGIN_MARK)
    assert "## Design comparison" in filled and "### Figures" in filled and "old table" not in filled
    assert filled.endswith(f"{END_MARK}\n\nMore reading.\n")
    assert splice_generated(filled, "# Other\n") == splice_generated(page, "# Other\n"), "idempotent"
    with pytest.raises(ValueError, match="no"):
        splice_generated("# no markers\n", "x")


def test_a_design_that_failed_over_and_never_came_back_reads_not_back_beside_one_that_did() -> None:
    """Failback is what tells an active-active edge that kept load on the standby from one that
    came home: side by side it reads "not back", not a dash among the figures nothing measured."""
    from bascule.reports._summary import compute_figures
    from bascule.reports.compare_html import render_compare_html

    home = result("active-passive-sovereign", 88.0, "B")
    home["figures"].update(time_to_failover=1.2, failback=2.5)
    stayed = result("active-active", 90.0, "A")
    stayed["figures"].update(time_to_failover=0.4, failback=None)
    stayed["figures"]["notes"] = {"failback": "traffic was not back on aws/eu-west-3 when the journal ended"}
    idle = result("single-region", 70.0, "C")
    idle["figures"].update(time_to_failover=None, failback=None)
    idle["figures"]["notes"] = {
        "failback": "no fault was reverted",
        "time_to_failover": "no fault touched this design",
    }
    comparison = build_comparison([parse_result(r) for r in [home, stayed, idle]])
    text = render_compare_markdown(comparison)
    rows = {line.split(" | ")[1]: line for line in text.splitlines() if line.count(" s |") or "exit" in line}
    assert "| fail over | failback |" in text
    assert "| 1.2 s | 2.5 s |" in rows["active-passive-sovereign"]
    assert "| 400 ms | not back |" in rows["active-active"]
    assert "| — | — |" in rows["single-region"]
    html = render_compare_html(comparison)
    assert '<dt>failback</dt><dd class="bad">not back</dd>' in html
    assert "<dt>failback</dt><dd>2.5 s</dd>" in html
    by_label = {f.label: f for f in compute_figures(parse_result(stayed))}
    assert by_label["Failback"].value == "not back"
    assert "aws/eu-west-3" in by_label["Failback"].note
    by_label = {f.label: f for f in compute_figures(parse_result(idle))}
    assert (by_label["Failback"].value, by_label["Failback"].note) == ("—", "no fault was reverted")
    assert by_label["Time to fail over"].note == "no fault touched this design"


def test_a_failing_figure_that_rounds_to_its_objective_shows_the_digits_that_fail_it() -> None:
    """A new user read "recovery FAIL 10 s ≤ 10 s": the RTO was 10.0025 s."""
    from bascule.reports._summary import compute_dimension_rows

    doc = result(
        "single-region", 80.0, "B", recovery={"measured": 10.0025, "objective": 10.0, "passed": False}
    )
    rows = {r.name: r for r in compute_dimension_rows(parse_result(doc))}
    assert (rows["recovery"].measured, rows["recovery"].objective) == ("10.0025 s", "≤ 10 s")
    assert rows["availability"].measured == "99.34 %"  # passing: as it was
