"""Discovered dependencies in every report format: summary.md, report.html, JUnit, bascule compare
(Markdown and HTML), from a ``bascule.result/1`` document that lists them — and an older document
without the key still parses, with none."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

from bascule.reports.compare import build_comparison, render_compare_markdown
from bascule.reports.compare_html import render_compare_html
from bascule.reports.html import render_html
from bascule.reports.junit import render_junit
from bascule.reports.markdown import render_markdown
from bascule.reports.model import Result, parse_result

SAMPLE = Path(__file__).parent / "samples" / "result-sample.json"

STS: dict[str, Any] = {
    "host": "sts.amazonaws.com",
    "provider": "aws",
    "operator": "Amazon Web Services",
    "jurisdiction": "US",
    "sovereignty": "foreign",
    "regions": ["scaleway/fr-par"],
    "askers": ["api-scaleway-fr-par-0"],
    "classes": {"confidential": 12, "internal": 9},
    "violations": 12,
    "requests": 23,
    "attributed": 23,
    "first": 1.2,
    "last": 9.8,
}
UNKNOWN: dict[str, Any] = {
    "host": "collector.example.net",
    "provider": None,
    "jurisdiction": "unknown",
    "sovereignty": "unknown",
    "regions": ["scaleway/fr-par"],
    "requests": 4,
    "tunnels": 1,
    "unattributed": 5,
    "first": 2.0,
    "last": 3.0,
}
STS_LINE = (
    "sts.amazonaws.com — Amazon Web Services (aws), US law, foreign: reached from scaleway/fr-par "
    "(api-scaleway-fr-par-0) by confidential 12×, internal 9×; 12 violations; 23 requests; first at "
    "1.20 s, last at 9.80 s."
)
UNKNOWN_LINE = (
    "collector.example.net — operator unknown to bascule's endpoint catalog, jurisdiction unknown, level "
    "unknown: reached from scaleway/fr-par; 4 requests, 1 HTTPS tunnel, 5 tied to no request (what data "
    "went there is unknown); first at 2.00 s, last at 3.00 s."
)


def result(*found: dict[str, Any]) -> Result:
    data = json.loads(SAMPLE.read_text())
    data["discovered"] = list(found)
    return parse_result(data)


def test_an_older_document_without_the_key_parses_with_none() -> None:
    data = json.loads(SAMPLE.read_text())
    data.pop("discovered", None)
    assert parse_result(data).discovered == ()


def test_summary_md_lists_each_host_with_its_operator_and_classes() -> None:
    text = render_markdown(result(STS, UNKNOWN))
    assert f"🔎 {STS_LINE}" in text
    assert f"🔎 {UNKNOWN_LINE}" in text
    assert "🔎" not in render_markdown(result())


def test_the_html_report_lists_them_among_the_findings() -> None:
    page = render_html(result(STS))
    assert '<span class="tag tag-discovered">discovered</span>' in page
    assert "sts.amazonaws.com — Amazon Web Services (aws), US law, foreign" in page
    assert "tag-discovered</span>" not in render_html(result()).replace(".tag-discovered", "")


def test_junit_has_the_count_and_the_lines() -> None:
    case = ET.fromstring(render_junit([result(STS, UNKNOWN)])).find("testcase")
    assert case is not None
    props = {p.get("name"): p.get("value") for p in case.iter("property")}
    assert props["bascule.discovered_dependencies"] == "2"
    out = case.find("system-out")
    assert out is not None and out.text is not None
    assert out.text.splitlines() == [
        "discovered dependencies (hosts outside the design):",
        STS_LINE,
        UNKNOWN_LINE,
    ]
    bare = ET.fromstring(render_junit([result()])).find("testcase")
    assert bare is not None and bare.find("system-out") is None


def test_compare_shows_them_in_each_cell() -> None:
    comparison = build_comparison([result(STS, UNKNOWN)])
    markdown = render_compare_markdown(comparison)
    assert (
        "outside the design: sts.amazonaws.com (aws, US, foreign); "
        "collector.example.net (unknown operator, unknown, unknown)"
    ) in markdown
    page = render_compare_html(comparison)
    assert "<dt>outside the design</dt>" in page and "sts.amazonaws.com (aws, US, foreign)" in page
    assert "outside the design" not in render_compare_markdown(build_comparison([result()]))


def test_junit_of_a_suite_stopped_early_lists_what_it_did_not_run_as_skipped() -> None:
    """A new user's interrupted suite wrote tests="1": the scenario it never ran was not listed,
    and a CI dashboard counted one test where two were asked for."""
    suite = ET.fromstring(
        render_junit(
            [result()],
            suite_name="bascule suite",
            not_run=[("second", "one")],
            why_not_run="the suite was stopped (interrupted by SIGINT)",
        )
    )
    assert (suite.get("tests"), suite.get("skipped")) == ("2", "1")
    cases = suite.findall("testcase")
    assert [(c.get("classname"), c.get("name")) for c in cases][1] == ("second", "one")
    skipped = cases[1].find("skipped")
    assert skipped is not None
    assert skipped.get("message") == "not run: the suite was stopped (interrupted by SIGINT)"
    assert ET.fromstring(render_junit([result()])).get("skipped") is None
