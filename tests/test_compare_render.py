"""compare.html: comparisons built from variants of the sample run result (other designs, scenarios,
scores and figures) render as one well-formed, self-contained page — the matrix with a dash for a
design not run, cost next to the average score, one chart per dimension, who wins and why — with
every hostile string escaped and no link but each run's own report.html."""

from __future__ import annotations

import copy
import json
import re
import time
from pathlib import Path
from typing import Any

import pytest
from html_check import parse

from bascule.reports.compare import DIMENSIONS, build_comparison
from bascule.reports.compare_html import render_compare_html
from bascule.reports.model import parse_result

SAMPLE = Path(__file__).parent / "samples" / "result-sample.json"
HOSTILE = (
    '<script>alert("x")</script> "quoted" \'single\' & | pipe | ](javascript:alert(1)) '
    "<img src=x onerror=alert(1)> *star* `tick`"
)
DURABLE = {"measured": 0.0, "sub_score": 100.0, "passed": True}
SCENARIOS = {
    "aws-us-east-1-2025-10-20": "AWS us-east-1 — DynamoDB DNS race, 2025-10-19/20",
    "ovhcloud-sbg-2021-03-10": "OVHcloud Strasbourg — SBG2 fire, 2021-03-10",
    "gcp-2025-06-12": "Google Cloud — Service Control outage, 2025-06-12",
}


def make_result(
    design: str,
    scenario: str,
    overall: float,
    grade: str,
    *,
    cost: float | None = 0.791,
    currency: str = "USD",
    figures: dict[str, Any] | None = None,
    **dimension_changes: dict[str, Any],
) -> dict[str, Any]:
    """The sample document as if `design` had been run under `scenario`."""
    doc: dict[str, Any] = copy.deepcopy(json.loads(SAMPLE.read_text(encoding="utf-8")))
    doc["run"]["dir"] = f"runs/20261126-{scenario}-{design}"
    doc["run"]["scenario"].update(id=scenario, title=SCENARIOS.get(scenario, scenario))
    doc["run"]["design"].update(id=design, title=f"{design.replace('-', ' ')} design")
    doc["score"]["overall"], doc["score"]["grade"] = overall, grade
    for entry in doc["score"]["dimensions"]:
        entry.update(dimension_changes.get(entry["name"], {}))
    doc["score"]["passed"] = all(d["passed"] for d in doc["score"]["dimensions"])
    doc["figures"]["cost"] = (
        None if cost is None else {"currency": currency, "steady_per_hour": cost, "failover_extra": 0.002}
    )
    doc["figures"].update(figures or {})
    return doc


def outage(design: str, scenario: str, cost: float | None) -> dict[str, Any]:
    """A design that went down with its only region and never came back."""
    return make_result(
        design,
        scenario,
        31.0,
        "F",
        cost=cost,
        figures={
            "success_ratio": 0.61,
            "rto": None,
            "recovered": False,
            "latency": {"p50": 0.2, "p95": 2.4, "p99": 5.0},
            "rpo": {"acknowledged": 120, "lost": 14, "window": 9.5},
        },
        availability={"measured": 0.61, "sub_score": 0.0, "passed": False},
        recovery={"measured": None, "sub_score": 0.0, "passed": False},
        latency={"measured": 2.4, "sub_score": 35.0, "passed": False},
        durability={"measured": 9.5, "sub_score": 0.0, "passed": False},
    )


def sample_results() -> list[dict[str, Any]]:
    """Three scenarios × four designs, one pair not run (sovereign-primary under gcp), one design
    without cost rates (active-active)."""
    aws, ovh, gcp = SCENARIOS
    leak = {
        "figures": {"sovereignty_violations": 12},
        "sovereignty": {"measured": 12, "sub_score": 0.0, "passed": False},
    }
    capped = make_result(
        "active-active",
        ovh,
        50.0,
        "D",
        cost=None,
        figures=leak["figures"],
        sovereignty=leak["sovereignty"],
    )
    capped["score"]["cap"] = {"at": 50, "reason": "12 sovereignty violations"}
    return [
        outage("single-region", aws, 0.31),
        outage("single-region", ovh, 0.31),
        make_result("single-region", gcp, 96.0, "A", cost=0.31, durability=DURABLE),
        make_result("active-passive-sovereign", aws, 89.7, "B"),
        make_result(
            "active-passive-sovereign",
            ovh,
            78.0,
            "C",
            figures={"rto": 24.0, "success_ratio": 0.962},
            availability={"measured": 0.962, "sub_score": 62.0, "passed": False},
            recovery={"measured": 24.0, "sub_score": 40.0, "passed": False},
        ),
        make_result("active-passive-sovereign", gcp, 93.0, "A", durability=DURABLE),
        make_result(
            "active-active",
            aws,
            97.0,
            "A",
            cost=None,
            figures={"rto": 1.1, "rpo": {"acknowledged": 120, "lost": 0, "window": None}},
            durability=DURABLE,
        ),
        capped,
        make_result("active-active", gcp, 97.0, "A", cost=None),
        make_result("sovereign-primary", aws, 92.0, "A", cost=1.42, currency="USD"),
        make_result(
            "sovereign-primary",
            ovh,
            84.0,
            "B",
            cost=1.42,
            durability=DURABLE,
            latency={"measured": 0.9, "sub_score": 72.0, "passed": True},
        ),
    ]


def words(texts: list[str]) -> str:
    return " ".join(" ".join(texts).split())


def matrix_rows(html: str) -> dict[str, list[str]]:
    """Scenario id → the text of each design's cell, in the matrix's column order."""
    body = html.split('<table class="matrix">', 1)[1].split("<tbody>", 1)[1].split("</tbody>", 1)[0]
    rows = {}
    for row in re.findall(r"<tr>(.*?)</tr>", body):
        scenario = re.search(r'<span class="id">(.*?)</span></th>', row)
        assert scenario is not None
        cells = re.findall(r"<td[^>]*>(.*?)</td>", row)
        rows[scenario.group(1)] = [words(parse(c).text) for c in cells]
    return rows


def chart(html: str, ident: str) -> str:
    return html.split(f'aria-labelledby="{ident}-title', 1)[1].split("</svg>", 1)[0]


@pytest.fixture
def html() -> str:
    return render_compare_html(build_comparison([parse_result(r) for r in sample_results()]))


def test_page_is_well_formed_and_has_every_part(html: str) -> None:
    assert html.startswith("<!DOCTYPE html>")
    page = parse(html)
    text = words(page.text)
    for heading in ("Scores side by side", "Cost next to resilience", "Sub-scores by dimension"):
        assert heading in text
    assert "Who wins, and why" in text
    assert "4 designs under 3 scenarios : 11 runs of 12 possible." in text
    ids = [attrs["id"] for _, attrs in page.tags if attrs.get("id")]
    assert len(ids) == len(set(ids))  # ids are unique, so every aria reference is unambiguous
    for tag, attrs in page.tags:
        if tag == "svg":
            assert attrs["role"] == "img"
            assert all(ref in ids for ref in (attrs["aria-labelledby"] or "").split())


def test_matrix_shows_grade_score_figures_and_a_dash_for_a_design_not_run(html: str) -> None:
    rows = matrix_rows(html)
    assert list(rows) == list(SCENARIOS)
    single, aps, aa, sp = rows["aws-us-east-1-2025-10-20"]
    assert single.startswith("F 31.0 ✗ FAIL")
    assert "availability 61 %" in single and "RTO never recovered" in single
    assert "p95 2.4 s" in single and "writes lost 14 of 120" in single
    assert "sovereignty violations 0" in single
    assert aps.startswith("B 89.7 ✗ FAIL") and "RTO 6.8 s" in aps and "p95 380 ms" in aps
    assert aa.startswith("A 97.0 ✓ PASS best")  # the top score of the scenario is marked
    assert "best" not in sp
    assert "capped: 12 sovereignty violations" in rows["ovhcloud-sbg-2021-03-10"][2]
    assert "sovereignty violations 12" in rows["ovhcloud-sbg-2021-03-10"][2]
    assert rows["gcp-2025-06-12"][3] == "— not run"
    assert 'class="cell missing"' in html
    assert 'class="cell cell-F"' in html and 'class="cell cell-A best"' in html
    assert '<dd class="bad">never recovered</dd>' in html and '<dd class="bad">14 of 120</dd>' in html


def test_cost_row_and_scatter_put_cost_next_to_the_average_score(html: str) -> None:
    foot = html.split("<tfoot>", 1)[1].split("</tfoot>", 1)[0]
    text = words(parse(f"<table>{foot}</table>").text)
    # single-region averages (31 + 31 + 96) / 3; sovereign-primary ran 2 of 3 scenarios
    assert "52.7 over 3 of 3 scenarios; 1 passed" in text
    assert "88.0 over 2 of 3 scenarios; 1 passed" in text
    assert "0.31 USD" in text and "1.42 USD" in text and "no cost rates" in text
    scatter = chart(html, "cost-scatter")
    assert scatter.count('<circle class="point"') == 3
    for design in ("single-region", "active-passive-sovereign", "sovereign-primary"):
        assert f">{design}</text>" in scatter
    assert ">active-active</text>" not in scatter
    assert "Not plotted: active-active (no cost rates)." in scatter
    assert "steady-state cost, USD per hour" in scatter and "average score" in scatter


def test_scatter_leaves_out_a_design_priced_in_another_currency() -> None:
    results = [
        make_result("a", "s", 80.0, "B", cost=1.0, currency="EUR"),
        make_result("b", "s", 70.0, "C", cost=2.0, currency="EUR"),
        make_result("c", "s", 60.0, "C", cost=3.0, currency="USD"),
    ]
    html = render_compare_html(build_comparison([parse_result(r) for r in results]))
    scatter = chart(html, "cost-scatter")
    assert scatter.count('<circle class="point"') == 2
    assert "Not plotted: c (cost in USD)." in scatter and "EUR per hour" in scatter


def test_no_cost_at_all_says_so_instead_of_an_empty_chart() -> None:
    html = render_compare_html(
        build_comparison([parse_result(r) for r in [make_result("a", "s", 80.0, "B", cost=None)]])
    )
    parse(html)
    assert 'id="cost-scatter-title"' not in html
    assert "Not plotted: a (no cost rates)." in html


def test_one_grouped_bar_chart_per_dimension(html: str) -> None:
    page = parse(html)
    charts = [attrs["aria-labelledby"] for tag, attrs in page.tags if tag == "svg"]
    assert charts == [
        "cost-scatter-title cost-scatter-desc",
        *(f"dim-{name}-title dim-{name}-desc" for name in DIMENSIONS),
    ]
    colours = set(re.findall(r'class="swatch" style="background: (#[0-9a-f]{6})"', html))
    assert len(colours) == 4  # one colour per design
    for name in DIMENSIONS:
        svg = chart(html, f"dim-{name}")
        assert f"{name.capitalize()} sub-score by scenario and design</title>" in svg
        assert svg.count('<g class="sub-bar">') == 11  # every run, each design its colour
        assert svg.count('<g class="absent-bar">') == 1
        assert "sovereign-primary under gcp-2025-06-12: not run" in svg
        assert len(set(re.findall(r'rx="2" fill="(#[0-9a-f]{6})"', svg))) == 4
    availability = chart(html, "dim-availability")
    assert "single-region under aws-us-east-1-2025-10-20: availability 0 of 100, failed; measured 61 %" in (
        availability
    )
    assert "aws-us-east-1-2025-10-20: single-region 0 (failed), active-passive-sovereign 100" in availability
    assert 'class="bar-label failed"' in availability


def test_who_wins_lists_each_ranking_and_its_why(html: str) -> None:
    comparison = build_comparison([parse_result(r) for r in sample_results()])
    wins = '<section aria-labelledby="wins-h">' + html.split('<section aria-labelledby="wins-h">', 1)[1]
    wins = wins.split("</section>", 1)[0] + "</section>"
    text = words(parse(wins).text)
    for verdict in comparison.verdicts:
        assert verdict.why.replace("'", "&#x27;") in wins
        ranked = [re.escape(c.design) for c in verdict.ranking]
        assert re.search(".*".join(ranked), text), verdict.scenario
    assert "active-active (A, 97) beats" in wins


def test_only_links_are_the_relative_run_reports() -> None:
    results = sample_results()
    results[0]["run"]["dir"] = "runs/a dir #1?x=y"
    results[1]["run"]["dir"] = "javascript:alert(1)"
    results[2]["run"]["dir"] = "//evil.example/x"
    results[3]["run"]["dir"] = "/abs/runs/x"
    results[4]["run"]["dir"] = ""
    html = render_compare_html(build_comparison([parse_result(r) for r in results]))
    page = parse(html)
    expected = {f"{r['run']['dir']}/report.html" for r in results[5:]} | {
        "runs/a%20dir%20%231%3Fx%3Dy/report.html"
    }
    hrefs = []
    for tag, attrs in page.tags:
        assert tag not in ("script", "link", "img", "iframe", "object", "embed", "base", "form")
        for name, value in attrs.items():
            assert name not in ("src", "srcset", "xlink:href", "action", "data", "poster")
            assert not name.startswith("on")
            if name == "href":
                assert tag == "a"
                hrefs.append(value)
    assert set(hrefs) == expected and len(hrefs) == len(expected)
    assert "url(" not in html and "@import" not in html
    assert "http://" not in html and "https://" not in html
    assert "default-src 'none'" in html


def test_hostile_ids_titles_and_grades_are_escaped() -> None:
    results = sample_results()
    for doc in results[:4]:
        doc["run"]["design"].update(id=HOSTILE, title=HOSTILE)
        doc["run"]["scenario"]["title"] = HOSTILE
        doc["score"]["grade"] = HOSTILE
        doc["score"]["cap"] = {"at": 50, "reason": HOSTILE}
        doc["figures"]["cost"]["currency"] = HOSTILE
    results[5]["run"]["scenario"]["id"] = HOSTILE
    results[6]["score"]["dimensions"][0]["unit"] = HOSTILE
    html = render_compare_html(build_comparison([parse_result(r) for r in results]))
    page = parse(html)
    for tag, attrs in page.tags:
        assert tag not in ("script", "img")
        assert not any(name.startswith("on") for name in attrs)
        assert "javascript" not in (attrs.get("href") or "")
    assert "<script" not in html and "<img" not in html
    assert sum(HOSTILE in text for text in page.text) >= 10  # round-trips as text, not markup
    assert 'class="grade-dot"' in html  # an unknown grade gets no grade colour class


def test_render_is_fast() -> None:
    results = [
        make_result(f"design-{d}", f"scenario-{s}", 50.0 + d * 4 + s, "C", cost=0.2 + d)
        for d in range(8)
        for s in range(10)
    ]
    comparison = build_comparison([parse_result(r) for r in results])
    started = time.process_time()  # CPU time: the wall clock on a loaded machine measures the neighbours
    html = render_compare_html(comparison)
    elapsed = time.process_time() - started
    parse(html)
    assert elapsed < 0.5
