"""compare.html in a real browser: Debian's chromium, driven by Playwright (no browser download),
opens the page from disk with no console error and no request beyond the file itself, and the
charts are drawn (each chart's pixels vary, in light and dark colour schemes)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from browser import BROWSER_MARKS, open_page, pixels
from playwright.sync_api import Page
from test_compare_render import sample_results

from bascule.reports.compare import DIMENSIONS, build_comparison
from bascule.reports.compare_html import render_compare_html
from bascule.reports.model import parse_result

pytestmark = BROWSER_MARKS

CHARTS = 1 + len(DIMENSIONS)  # the cost scatter, then one grouped-bar chart per dimension


def painted(image: np.ndarray, hex_colour: str) -> int:
    """Pixels of (almost exactly) one colour: the inside of a point or a bar, not its antialiased edge."""
    rgb = np.array([int(hex_colour[i : i + 2], 16) / 255 for i in (1, 3, 5)])
    return int(np.sum(np.all(np.abs(image - rgb) < 0.03, axis=2)))


@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_compare_opens_cleanly_and_draws_its_charts(tmp_path: Path, scheme: str) -> None:
    page_path = tmp_path / "compare.html"
    html = render_compare_html(build_comparison([parse_result(r) for r in sample_results()]))
    page_path.write_text(html, encoding="utf-8")
    # The design colours in the order of the page's design list; active-active has no cost (no point).
    colours = list(dict.fromkeys(re.findall(r'class="swatch" style="background: (#[0-9a-f]{6})"', html)))
    assert len(colours) == 4

    def inspect(page: Page) -> tuple[Any, ...]:
        assert page.title() == "bascule · design comparison — 4 designs × 3 scenarios"
        overflow = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
        labelled = page.evaluate(
            """() => [...document.querySelectorAll('svg.chart')].map(svg =>
                svg.getAttribute('aria-labelledby').split(' ')
                   .map(id => (document.getElementById(id) || {}).textContent || '').join(' | '))"""
        )
        links = page.evaluate("() => [...document.querySelectorAll('a[href]')].map(a => a.href)")
        page.screenshot(path=str(tmp_path / f"compare-{scheme}.png"), full_page=True)
        charts = page.locator("svg.chart")
        assert charts.count() == CHARTS
        shots = []
        for i in range(CHARTS):
            chart = charts.nth(i)
            box = chart.bounding_box()
            assert box is not None
            shots.append((box, chart.screenshot()))
        return overflow, labelled, links, shots

    (overflow, labelled, links, shots), problems, requests = open_page(
        page_path, tmp_path / "profile", scheme, inspect
    )
    assert problems == []
    assert requests == [page_path.as_uri()]
    assert overflow <= 0  # nothing wider than the window
    assert len(labelled) == CHARTS and all(len(text) > 60 for text in labelled)
    # Each run's report, beside this page: the eleven runs of the sample, none elsewhere.
    assert len(links) == 11
    assert all(link.startswith((tmp_path / "runs").as_uri() + "/") for link in links)
    assert all(link.endswith("/report.html") for link in links)
    for i, (box, png) in enumerate(shots):
        assert box["width"] > 380 and box["height"] > 160
        image = pixels(png)
        assert float(image.std()) > 0.05
        # Drawn content, not an empty frame: a share of the chart differs from its background (a
        # scatter of three points is sparser than six groups of bars) ...
        background = np.median(image.reshape(-1, 3), axis=0)
        drawn = float(np.mean(np.any(np.abs(image - background) > 0.1, axis=2)))
        assert drawn > (0.01 if i == 0 else 0.05)
        # ... and every design that has a point or bars is there in its own colour.
        for colour in [c for c in colours if i > 0 or c != colours[2]]:
            assert painted(image, colour) > (40 if i == 0 else 400), (i, colour)
