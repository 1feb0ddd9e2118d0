"""The live game-day page on the README's main job, in headless Chromium: screenshots at three
instants, and how long after its journal record each fault transition showed on the page.

Runs ``bascule run SCENARIO --web --quiet`` (the local target), opens the printed URL in Debian's
chromium (Playwright, no browser download), watches every phase bar's state change (stamped with
the browser's clock), and takes a screenshot a few seconds into the plan, in its middle, and once
the run has ended. Then reads the journal: for each ``fault-applied`` / ``fault-reverted`` of a
phase, the delay from the record's write (``wall``) to the page's change.

    python bench/game_day_page.py                                 # docs/images/game-day-*.png
    python bench/game_day_page.py --out /tmp/shots --run-dir /tmp/gd
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path
from typing import Any

from PIL import Image
from playwright.sync_api import Page, sync_playwright

ROOT = Path(__file__).resolve().parent.parent
SCENARIO = ROOT / "scenarios" / "incidents" / "aws-us-east-1-2025-10-20.yaml"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
FLAGS = ["--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking"]
URL = re.compile(r"game-day page: (http://127\.0\.0\.1:\d+/\?token=[\w-]+)")
WATCH = """() => {
  window.__seen = [];
  new MutationObserver((changes) => {
    for (const c of changes) {
      if (c.attributeName === "data-state" && c.target.dataset.phase !== undefined) {
        window.__seen.push({phase: Number(c.target.dataset.phase), state: c.target.dataset.state,
                            at: Date.now()});
      }
    }
  }).observe(document.body, {subtree: true, attributes: true, attributeFilter: ["data-state"]});
}"""


def _wait_until(page: Page, expression: str, timeout: float) -> None:
    # Polled from here: wait_for_function's `new Function` is forbidden by the page's CSP.
    deadline = time.monotonic() + timeout
    while not page.evaluate(expression):
        if time.monotonic() > deadline:
            raise TimeoutError(expression)
        time.sleep(0.05)


def _wall_ms(record: dict[str, Any]) -> float:
    return datetime.fromisoformat(record["wall"]).timestamp() * 1000


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--scenario", type=Path, default=SCENARIO)
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "images")
    parser.add_argument("--run-dir", type=Path, default=None)
    parser.add_argument("--at", default="4,32", help="plan seconds of the first two screenshots")
    args = parser.parse_args()
    run_dir = args.run_dir or Path(tempfile.mkdtemp(prefix="game-day-")) / "run"
    shots = [float(x) for x in args.at.split(",")]
    args.out.mkdir(parents=True, exist_ok=True)
    command = [sys.executable, "-c", "from bascule.cli import main; main()", "run", str(args.scenario)]
    process = subprocess.Popen(
        [*command, "--web", "--quiet", "--out", str(run_dir)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        cwd=ROOT,
    )
    printed: list[str] = []
    try:
        assert process.stdout is not None
        url = None
        deadline = time.monotonic() + 120
        while url is None and time.monotonic() < deadline:
            line = process.stdout.readline()
            if not line:
                break
            printed.append(line)
            found = URL.search(line)
            url = found.group(1) if found else None
        if url is None:
            print("".join(printed), file=sys.stderr)
            return 1
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=FLAGS)
            page = browser.new_page(viewport={"width": 1280, "height": 860})
            page.goto(url, wait_until="load")
            page.evaluate(WATCH)
            _wait_until(page, "state.planStart !== null", 180)
            started = time.monotonic()
            for i, at in enumerate(shots, start=1):
                time.sleep(max(0.0, started + at - time.monotonic()))
                page.screenshot(path=str(args.out / f"game-day-{i}.png"))
            _wait_until(page, "state.ended", 300)
            page.screenshot(path=str(args.out / f"game-day-{len(shots) + 1}.png"))
            seen: list[dict[str, Any]] = page.evaluate("window.__seen")
            browser.close()
        process.wait(120)
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGINT)
            process.wait(60)
    journal = [json.loads(line) for line in (run_dir / "journal.jsonl").read_text().splitlines()]
    delays = []
    for record in journal:
        if record["type"] in ("fault-applied", "fault-reverted") and "phase" in record:
            op = record["type"].removeprefix("fault-")
            shown = [
                s["at"]
                for s in seen
                if s["phase"] == record["phase"] and s["state"] == op and s["at"] >= _wall_ms(record) - 50
            ]
            delay = (shown[0] - _wall_ms(record)) if shown else None
            delays.append(delay)
            shown_text = "never shown" if delay is None else f"{delay:7.0f} ms"
            print(
                f"{record['t']:8.2f} s  {op:9} phase {record['phase']} {record['name'][:40]:40} {shown_text}"
            )
    measured = [d for d in delays if d is not None]
    if measured:
        print(
            f"{len(measured)}/{len(delays)} transitions shown; max {max(measured):.0f} ms, "
            f"median {sorted(measured)[len(measured) // 2]:.0f} ms"
        )
    for shot in sorted(args.out.glob("game-day-*.png")):  # small files for the docs: 128 colours
        Image.open(shot).convert("RGB").quantize(128).save(shot, optimize=True)
    print(f"exit {process.returncode}; run directory {run_dir}; screenshots in {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
