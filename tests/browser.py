"""Opening a rendered page in a real browser, for the report tests: Debian's chromium driven by
Playwright (no browser download), with what the page logged and requested."""

from __future__ import annotations

import io
import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import numpy as np
import pytest
from matplotlib import image as mpimg
from playwright.sync_api import ConsoleMessage, Page, Request, sync_playwright

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]

BROWSER_MARKS = [
    pytest.mark.slow,
    # CI installs chromium (.ci/run sets BASCULE_REQUIRE_BROWSER): there, a missing browser fails.
    pytest.mark.skipif(
        not Path(CHROMIUM).exists() and not os.environ.get("BASCULE_REQUIRE_BROWSER"),
        reason="chromium is not installed (Debian: apt-get install -y chromium)",
    ),
]

T = TypeVar("T")


def pixels(png: bytes) -> np.ndarray:
    return np.asarray(mpimg.imread(io.BytesIO(png), format="png"))[:, :, :3]


def open_page(
    path: Path, profile: Path, scheme: str, inspect: Callable[[Page], T]
) -> tuple[T, list[str], list[str]]:
    """Load `path` in a fresh profile with the colour `scheme`, run `inspect` on the page; returns
    what it returned, the console errors and warnings (and page errors), and every URL requested."""
    problems: list[str] = []
    requests: list[str] = []

    def on_console(message: ConsoleMessage) -> None:
        if message.type in ("error", "warning"):
            problems.append(f"{message.type}: {message.text}")

    def on_request(request: Request) -> None:
        requests.append(request.url)

    with sync_playwright() as playwright:
        # Playwright adds --headless; the profile is fresh.
        context = playwright.chromium.launch_persistent_context(
            str(profile),
            executable_path=CHROMIUM,
            headless=True,
            args=FLAGS,
            viewport={"width": 1280, "height": 900},
            color_scheme=scheme,  # type: ignore[arg-type]
        )
        try:
            page = context.new_page()
            page.on("console", on_console)
            page.on("pageerror", lambda error: problems.append(f"page error: {error}"))
            page.on("request", on_request)
            page.goto(path.as_uri(), wait_until="load")
            seen = inspect(page)
        finally:
            context.close()
    return seen, problems, requests
