"""report.html in a real browser: Debian's chromium, driven by Playwright (no browser download),
opens the page from disk with no console error and no request beyond the file itself, and the
charts are drawn (each chart's pixels vary, in light and dark colour schemes)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from browser import BROWSER_MARKS, open_page, pixels
from playwright.sync_api import Page

from bascule.reports.html import render_html
from bascule.reports.model import parse_result

SAMPLE = Path(__file__).parent / "samples" / "result-sample.json"
pytestmark = BROWSER_MARKS


@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_report_opens_cleanly_and_draws_its_charts(tmp_path: Path, scheme: str) -> None:
    result: dict[str, Any] = json.loads(SAMPLE.read_text(encoding="utf-8"))
    report = tmp_path / "report.html"
    report.write_text(render_html(parse_result(result)), encoding="utf-8")

    def inspect(page: Page) -> tuple[Any, ...]:
        assert page.title().startswith("bascule · aws-us-east-1-2025-10-20 on active-passive-sovereign")
        overflow = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
        labelled = page.evaluate(
            """() => [...document.querySelectorAll('svg.chart')].map(svg =>
                svg.getAttribute('aria-labelledby').split(' ')
                   .map(id => (document.getElementById(id) || {}).textContent || '').join(' | '))"""
        )
        page.screenshot(path=str(tmp_path / f"report-{scheme}.png"), full_page=True)
        charts = page.locator("svg.chart")
        assert charts.count() == 3
        shots = []
        for i in range(3):
            chart = charts.nth(i)
            box = chart.bounding_box()
            assert box is not None
            shots.append((box, chart.screenshot()))
        return overflow, labelled, shots

    (overflow, labelled, shots), problems, requests = open_page(report, tmp_path / "profile", scheme, inspect)
    assert problems == []
    assert requests == [report.as_uri()]
    assert overflow <= 0  # nothing wider than the window
    assert len(labelled) == 3 and all(len(text) > 40 for text in labelled)
    for box, png in shots:
        assert box["width"] > 400 and box["height"] > 180
        image = pixels(png)
        assert float(image.std()) > 0.05
        # Drawn content, not an empty frame: a good share of the chart differs from its background.
        background = np.median(image.reshape(-1, 3), axis=0)
        assert float(np.mean(np.any(np.abs(image - background) > 0.1, axis=2))) > 0.05
