"""The live game-day page in a real browser — Debian's chromium driven by Playwright (no browser
download; tests/browser.py): a run's page shows each fault phase within 1 s of its journal record,
its abort button reverts everything within 2 s, the token is enforced, the page asks nothing of any
other origin; on the local target through ``bascule run --web``, and ``bascule stack up --web``'s
form injects, reverts and aborts faults on a real stack."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from browser import BROWSER_MARKS, CHROMIUM, FLAGS
from fake_target import ENTRY
from local_helpers import write_small_design
from playwright.sync_api import Page, sync_playwright
from test_run_logic import assert_rolled_back_and_ended, fake, files, records, scenario
from web_run import web_run

from bascule.exit_codes import ExitCode
from bascule.journal import read_journal
from bascule.targets import registry
from bascule.targets.local.ledger import LEDGER_FILE, read_ledger

pytestmark = BROWSER_MARKS

ROOT = Path(__file__).resolve().parent.parent
CLI = [sys.executable, "-c", "from bascule.cli import main; main()"]
URL = re.compile(r"game-day page: (http://127\.0\.0\.1:\d+/\?token=[\w-]+)")

THREE = """
  - {name: first, at: 0s, for: 0.6s, fault: {kind: latency, fixed: 5ms}, target: {component: notes}}
  - {name: second, at: 1s, for: 0.6s, fault: {kind: latency, fixed: 10ms}, target: {component: notes}}
  - {name: third, at: 2s, for: 0.6s, fault: {kind: http-error, statuses: [503], ratio: 0.5},
     target: {component: notes}}
"""
HELD = """
  - {name: held, at: 0s, for: 30s, fault: {kind: latency, fixed: 10ms}, target: {component: notes}}
"""

# Every change of a phase's state, stamped with the browser's wall clock (ms since the epoch).
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


@pytest.fixture(autouse=True)
def fake_registered(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(registry.TARGETS, ENTRY.name, ENTRY)


def wall_ms(record: dict[str, Any]) -> float:
    """When the record was written (ms since the epoch)."""
    return datetime.fromisoformat(record["wall"]).timestamp() * 1000


def instant_ms(journal: list[dict[str, Any]], record: dict[str, Any]) -> float:
    """When what the record says happened (its ``t``; a rollback's reverts are journaled only once
    the target has stopped), on the wall clock (ms since the epoch)."""
    started = next(r for r in journal if r["type"] == "run-started")  # journaled as it happened
    return wall_ms(started) + (record["t"] - started["t"]) * 1000


CLICKED = """() => document.getElementById("abort").addEventListener(
    "click", () => { window.__clicked = Date.now(); }, {capture: true})"""


@contextmanager
def browser_page(profile: Path) -> Iterator[tuple[Page, list[str], list[str]]]:
    """A fresh page; the console errors and page errors, and every URL it requested."""
    problems: list[str] = []
    requests: list[str] = []
    with sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            str(profile),
            executable_path=CHROMIUM,
            headless=True,
            args=FLAGS,
            viewport={"width": 1280, "height": 900},
        )
        try:
            page = context.new_page()
            page.on(
                "console", lambda m: problems.append(f"{m.type}: {m.text}") if m.type == "error" else None
            )
            page.on("pageerror", lambda error: problems.append(f"page error: {error}"))
            page.on("request", lambda request: requests.append(request.url))
            yield page, problems, requests
        finally:
            context.close()


def wait_until(page: Page, expression: str, timeout: float) -> None:
    """Until `expression` is true in the page. Polled from here: Playwright's own wait_for_function
    evaluates a string with ``new Function``, which the page's Content-Security-Policy forbids."""
    deadline = time.monotonic() + timeout
    while not page.evaluate(expression):
        assert time.monotonic() < deadline, f"not within {timeout:g} s: {expression}"
        time.sleep(0.05)


def only_its_own_origin(requests: list[str], url: str) -> None:
    origin = url.split("/?", maxsplit=1)[0] + "/"
    assert requests and all(r.startswith(origin) for r in requests), requests


def test_each_fault_phase_shows_within_a_second_of_its_journal_record(tmp_path: Path) -> None:
    starter = fake()
    with browser_page(tmp_path / "profile") as (page, problems, requests):
        running = web_run(files(tmp_path, scenario(THREE, warm_up="2s")), starter, tmp_path / "run")
        url = running.url()
        page.goto(url, wait_until="load")
        page.evaluate(WATCH)
        loaded = time.time() * 1000
        page.wait_for_selector("#status.ok, #status.bad", timeout=30_000)  # live, then ended
        outcome = running.wait(60)
        wait_until(page, "document.getElementById('stage').textContent === 'ended'", 10)
        seen: list[dict[str, Any]] = page.evaluate("window.__seen")
        bars = page.evaluate(
            "[...document.querySelectorAll('.bar')].map(b => [b.textContent, b.dataset.state])"
        )
        page.screenshot(path=str(tmp_path / "run-page.png"), full_page=True)
    assert outcome.exit_code in (ExitCode.OK, ExitCode.OBJECTIVES_FAILED), outcome.reason
    assert_rolled_back_and_ended(outcome, starter)
    assert problems == []
    only_its_own_origin(requests, url)
    assert bars == [
        ["first · latency", "reverted"],
        ["second · latency", "reverted"],
        ["third · http-error", "reverted"],
    ]
    (plan_started,) = records(outcome, "plan-started")
    assert wall_ms(plan_started) > loaded, "the page was open before the plan started"
    delays = []
    for record in records(outcome, "fault-applied") + records(outcome, "fault-reverted"):
        op = record["type"].removeprefix("fault-")
        shown = [s["at"] for s in seen if s["phase"] == record["phase"] and s["state"] == op]
        assert shown, f"the page never showed {record['name']} {op}"
        delays.append(shown[0] - wall_ms(record))
    assert len(delays) == 6
    assert max(delays) <= 1000, delays
    assert min(delays) > -50, delays  # shown after it was journaled (clock granularity aside)


def test_the_abort_button_reverts_everything_within_two_seconds(tmp_path: Path) -> None:
    starter = fake()
    with browser_page(tmp_path / "profile") as (page, problems, requests):
        running = web_run(files(tmp_path, scenario(HELD)), starter, tmp_path / "run")
        url = running.url()
        page.goto(url, wait_until="load")
        page.wait_for_selector(".bar[data-state=applied]", timeout=30_000)
        page.evaluate(CLICKED)
        page.click("#abort")
        clicked = page.evaluate("window.__clicked")
        outcome = running.wait(60)
        wait_until(
            page,
            "document.getElementById('status').textContent.includes('aborted from the game-day page')",
            10,
        )
        assert page.evaluate("document.querySelector('.bar').dataset.state") == "reverted"
        assert page.is_disabled("#abort")
    assert outcome.exit_code == ExitCode.ABORTED
    assert outcome.reason == "aborted from the game-day page"
    assert_rolled_back_and_ended(outcome, starter)  # the target's own log: every apply reverted
    assert len(records(outcome, "fault-applied")) == 1
    (reverted,) = records(outcome, "fault-reverted")
    assert reverted["rollback"] is True
    took = instant_ms(records(outcome), reverted) - clicked
    print(f"abort clicked → every fault reverted in {took:.0f} ms")
    assert 0 < took <= 2000, took
    assert problems == []
    only_its_own_origin(requests, url)


def test_the_page_needs_its_token(tmp_path: Path) -> None:
    starter = fake()
    with browser_page(tmp_path / "profile") as (page, _, _):
        running = web_run(files(tmp_path, scenario(HELD)), starter, tmp_path / "run")
        url = running.url()
        base = url.split("?")[0]
        try:
            for wrong in (base, base + "?token=", base + "?token=" + "x" * 24):
                answer = page.goto(wrong)
                assert answer is not None and answer.status == 403
                assert "token" in page.content()
            answer = page.goto(url)
            assert answer is not None and answer.status == 200
            page.wait_for_selector(".bar", timeout=30_000)
            # The page's own requests carry the token; without it, its actions are refused too.
            status = page.evaluate(
                f"fetch({base + 'actions/abort'!r}, {{method: 'POST', body: '{{}}'}}).then(r => r.status)"
            )
            assert status == 403
            assert running.thread is not None and running.thread.is_alive(), "the run went on"
        finally:
            httpx.post(url.replace("/?", "/actions/abort?"), json={}, trust_env=False)
            outcome = running.wait(60)
    assert outcome.reason == "aborted from the game-day page"
    assert_rolled_back_and_ended(outcome, starter)


# -- real processes ------------------------------------------------------------------------------


def read_url(process: subprocess.Popen[str], seen: list[str], timeout: float) -> str:
    deadline = time.monotonic() + timeout
    assert process.stdout is not None
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        if not line:
            break
        seen.append(line)
        found = URL.search(line)
        if found:
            return found.group(1)
    raise AssertionError("no page URL printed:\n" + "".join(seen))


def stop(process: subprocess.Popen[str], seen: list[str]) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
    try:
        out, _ = process.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        process.kill()
        out, _ = process.communicate(timeout=10)
    seen.append(out or "")


def test_run_web_on_the_local_target_aborts_and_the_ledger_is_clean(tmp_path: Path) -> None:
    """`bascule run --web` on real processes: both phases show, the abort button rolls both back
    within 2 s (the target's ledger and the journal agree), exit 3."""
    out = tmp_path / "run"
    seen: list[str] = []
    process = subprocess.Popen(
        [
            *CLI,
            "run",
            str(ROOT / "tests" / "samples" / "run-long.yaml"),
            "--web",
            "--quiet",
            "--out",
            str(out),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        cwd=tmp_path,
    )
    try:
        url = read_url(process, seen, timeout=60)
        with browser_page(tmp_path / "profile") as (page, problems, requests):
            page.goto(url, wait_until="load")
            wait_until(page, "document.querySelectorAll('.bar[data-state=applied]').length === 2", 90)
            page.wait_for_selector("#figures tbody tr[data-region='aws/us-east-1']", timeout=30_000)
            page.evaluate(CLICKED)
            page.click("#abort")
            clicked = page.evaluate("window.__clicked")
            process.wait(90)
            wait_until(page, "document.querySelectorAll('.bar[data-state=reverted]').length === 2", 10)
    finally:
        stop(process, seen)
    assert process.returncode == ExitCode.ABORTED, "".join(seen)
    assert problems == []
    only_its_own_origin(requests, url)
    journal = list(read_journal(out / "journal.jsonl"))
    applied = [r for r in journal if r["type"] == "fault-applied"]
    reverted = [r for r in journal if r["type"] == "fault-reverted"]
    assert len(applied) == 2 and len(reverted) == 2 and all(r.get("rollback") for r in reverted)
    took = max(instant_ms(journal, r) for r in reverted) - clicked
    print(f"abort clicked → every fault reverted in {took:.0f} ms")
    assert 0 < took <= 2000, took
    ledger = read_ledger(out / LEDGER_FILE)
    assert len(ledger.applied) == 2 and ledger.active == () and ledger.closed
    assert journal[-1]["reason"] == "aborted from the game-day page"


def test_stack_up_web_injects_reverts_and_aborts_faults_from_its_form(tmp_path: Path) -> None:
    design = write_small_design(tmp_path)
    run_dir = tmp_path / "stack"
    seen: list[str] = []
    process = subprocess.Popen(
        [*CLI, "stack", "up", "--design", str(design), "--run-dir", str(run_dir), "--web", "--for", "180"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        cwd=tmp_path,
    )
    try:
        url = read_url(process, seen, timeout=90)
        routes = json.loads((run_dir / "stack.json").read_text())["routes"]
        route = next(v for k, v in routes.items() if k.startswith("gateway@") and "->llm@" in k)
        health = f"http://127.0.0.1:{route}/healthz"
        assert httpx.get(health, trust_env=False).status_code == 200
        with browser_page(tmp_path / "profile") as (page, problems, requests):
            page.goto(url, wait_until="load")
            kinds = page.evaluate("[...document.querySelectorAll('#kind option')].map(o => o.value)")
            assert {"crash", "http-error", "latency", "dns", "flap", "partition"} <= set(kinds)

            def inject_http_error() -> None:
                page.select_option("#kind", "http-error")
                page.fill("#param-statuses", "[503]")
                page.select_option("#component", "llm")
                page.click("#inject button[type=submit]")

            inject_http_error()
            page.wait_for_selector("#active li[data-state=holding]", timeout=30_000)
            assert httpx.get(health, trust_env=False).status_code == 503
            page.click("#active li[data-state=holding] button")
            page.wait_for_selector("#active li[data-state=ended]", timeout=10_000)
            assert httpx.get(health, trust_env=False).status_code == 200

            inject_http_error()
            page.wait_for_selector("#active li[data-state=holding]", timeout=30_000)
            assert httpx.get(health, trust_env=False).status_code == 503
            clicked = time.monotonic()
            page.click("#abort")
            wait_until(page, "document.querySelectorAll('#active li[data-state=ended]').length === 2", 10)
            assert time.monotonic() - clicked <= 2.0
            assert httpx.get(health, trust_env=False).status_code == 200
            # A form that names nothing to act on is refused with the reason, nothing injected.
            page.select_option("#kind", "crash")
            page.select_option("#component", "")
            page.click("#inject button[type=submit]")
            page.wait_for_selector("#inject-answer.bad", timeout=10_000)
            assert "say what the fault acts on" in page.text_content("#inject-answer")
        ledger = read_ledger(run_dir / LEDGER_FILE)
        assert len(ledger.applied) == 2 and ledger.active == ()
        # The browser logs the refusal's answer (400), nothing else.
        assert problems == [
            "error: Failed to load resource: the server responded with a status of 400 (Bad Request)"
        ]
        only_its_own_origin(requests, url)
    finally:
        stop(process, seen)
    assert process.returncode == 0, "".join(seen)
    assert "stopped" in "".join(seen)
