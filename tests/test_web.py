"""The live game-day page without a browser: journal records digested into page events, the token
and the loopback-only Host, the event stream (history, then live), a run on the fake target whose
page's abort rolls everything back, and the stack form's parsing. The browser tests are in
tests/test_web_browser.py."""

from __future__ import annotations

import http.client
import json
import threading
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from fake_target import ENTRY
from test_run_logic import LONG, TWO, assert_rolled_back_and_ended, fake, files, records, scenario
from web_run import web_run

from bascule.exit_codes import ExitCode
from bascule.journal import Journal, LatencySketch, RequestSample, Window
from bascule.targets import registry
from bascule.web.digest import PageEvent, RunDigest, recent_figures
from bascule.web.page import PageMode, render_page
from bascule.web.server import ActionError, Feed, PageServer
from bascule.web.stack import parse_fault_form


@pytest.fixture(autouse=True)
def fake_registered(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(registry.TARGETS, ENTRY.name, ENTRY)


def sample(region: str | None, ok: bool, latency: float) -> RequestSample:
    return RequestSample(
        source="load",
        kind="ask",
        started=0.1,
        latency=latency,
        status=200 if ok else 503,
        ok=ok,
        entry_region=region,
    )


# -- digest ----------------------------------------------------------------------------------------


def test_windows_count_every_request_by_region_and_the_figures_merge_them() -> None:
    first, second = Window(0.0, 1.0), Window(1.0, 1.0)
    for _ in range(9):
        first.add(sample("aws/us-east-1", True, 0.100))
    first.add(sample("aws/us-east-1", False, 5.0))
    for _ in range(10):
        second.add(sample("scaleway/fr-par", True, 0.300))
    record = first.to_record()
    assert record["by_region"]["aws/us-east-1"]["ok"] == 9
    assert record["by_region"]["aws/us-east-1"]["requests"] == 10
    assert record["by_region"]["aws/us-east-1"]["p95"] == pytest.approx(0.100, rel=0.02)
    figures = recent_figures([record, second.to_record()])
    assert figures["overall"] == {
        "requests": 20,
        "ok": 19,
        "ratio": 0.95,
        "p95_ms": pytest.approx(300, rel=0.02),
    }
    assert figures["regions"]["aws/us-east-1"]["ratio"] == 0.9
    assert figures["regions"]["scaleway/fr-par"]["p95_ms"] == pytest.approx(300, rel=0.02)
    # A failed request is in no share: the share is of successful requests by serving region.
    assert figures["share"] == {"aws/us-east-1": round(9 / 19, 4), "scaleway/fr-par": round(10 / 19, 4)}
    assert LatencySketch.from_json(record["by_region"]["aws/us-east-1"]["latency"]).count == 9


def test_the_digest_turns_records_into_page_events() -> None:
    digest = RunDigest()
    run = {
        "type": "run-started",
        "t": 0.0,
        "scenario": {"id": "s", "title": "T", "guardrails": [{"kind": "success-ratio", "below": 0.05}]},
        "design": {
            "id": "d",
            "regions": [{"id": "aws/us-east-1", "provider": "aws", "sovereignty": "foreign"}],
        },
        "plan": {
            "scenario": "s",
            "design": "d",
            "time": {"run_length_s": 10.0, "scale": 1.0},
            "phases": [
                {
                    "index": 0,
                    "name": "dns",
                    "kind": "dns",
                    "target": "store",
                    "run_start_s": 0,
                    "run_end_s": 4,
                }
            ],
            "findings": [{"severity": "warning", "kind": "hidden", "message": "<b>x</b>"}],
        },
    }
    (event,) = digest.take(run)
    assert event.name == "run"
    assert event.data["phases"][0] | {} == {
        "index": 0,
        "name": "dns",
        "kind": "dns",
        "target": "store",
        "start": 0,
        "end": 4,
        "note": "",
    }
    assert event.data["guardrails"] == ["success-ratio: below 0.05"]
    assert event.data["findings"][0]["message"] == "<b>x</b>"  # escaped by the page, not here
    applied = {"type": "fault-applied", "t": 1.5, "phase": 0, "name": "dns", "kind": "dns", "cycle": None}
    assert digest.take(applied) == [
        PageEvent(
            "fault",
            {
                "t": 1.5,
                "op": "applied",
                "phase": 0,
                "name": "dns",
                "kind": "dns",
                "cycle": None,
                "actual": None,
                "planned": None,
                "key": None,
                "rollback": None,
                "effects": None,
            },
        )
    ]
    for key in ("p3.c1", "run-3f9a/p3", "fake/p3.c0"):
        (rollback,) = digest.take({"type": "fault-reverted", "t": 2.0, "key": key, "rollback": True})
        assert rollback.data["phase"] == 3 and rollback.data["op"] == "reverted"
    assert digest.take({"type": "sample", "t": 1.0}) == []
    (stage,) = digest.take({"type": "plan-started", "t": 0.7})
    assert stage.data == {"t": 0.7, "stage": "plan started"}
    (ended,) = digest.take({"type": "run-ended", "t": 9.0, "exit_code": 3, "reason": "r"})
    assert ended == PageEvent("ended", {"t": 9.0, "exit_code": 3, "reason": "r"})


def test_the_page_escapes_what_it_embeds() -> None:
    html = render_page(PageMode.STACK, "tok", "a <title> & more", {"design": "</script><script>alert(1)"})
    assert "<title>a &lt;title&gt; &amp; more</title>" in html
    assert "</script><script>alert(1)" not in html
    assert "\\u003c/script\\u003e\\u003cscript\\u003ealert(1)" in html
    assert "innerHTML" not in html and "http" not in html.split("<script", 1)[1]  # nothing fetched elsewhere


def test_the_journal_tells_its_subscribers_every_record_in_order(tmp_path: Path) -> None:
    journal = Journal(tmp_path, time.monotonic())
    seen: list[str] = []
    journal.subscribe(lambda record: seen.append(record["type"]))
    journal.subscribe(lambda record: 1 / 0)  # a failing one is dropped, the journal goes on
    for kind in ("a", "b", "c"):
        journal.write(kind)
    journal.close()
    assert seen == ["a", "b", "c"]
    assert [
        json.loads(line)["type"] for line in (tmp_path / "journal.jsonl").read_text().splitlines()
    ] == seen


# -- server ----------------------------------------------------------------------------------------


def get(
    url: str, *, host: str | None = None, method: str = "GET", body: bytes | None = None
) -> tuple[int, bytes]:
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname or "", parts.port, timeout=5)
    try:
        path = parts.path + (f"?{parts.query}" if parts.query else "")
        headers = {"Host": host} if host else {}
        conn.request(method, path, body=body, headers=headers)
        answer = conn.getresponse()
        return answer.status, answer.read()
    finally:
        conn.close()


def read_events(url: str, count: int, timeout: float = 5.0) -> list[tuple[str, dict[str, Any]]]:
    """The first `count` events of the stream other than the clock."""
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname or "", parts.port, timeout=timeout)
    events: list[tuple[str, dict[str, Any]]] = []
    try:
        conn.request("GET", f"/events?{parts.query}")
        answer = conn.getresponse()
        assert answer.status == 200 and answer.getheader("Content-Type") == "text/event-stream"
        name = ""
        deadline = time.monotonic() + timeout
        while len(events) < count and time.monotonic() < deadline:
            line = answer.fp.readline().decode().rstrip("\n")
            if line.startswith("event: "):
                name = line[7:]
            elif line.startswith("data: ") and name != "clock":
                events.append((name, json.loads(line[6:])))
    finally:
        conn.close()
    return events


def test_the_token_is_enforced_and_only_loopback_hosts_are_answered() -> None:
    feed = Feed(time.monotonic())
    asked: list[str] = []
    server = PageServer(
        feed,
        lambda token: render_page(PageMode.RUN, token, "t"),
        {"abort": lambda f: asked.append("x") or {}},
    )
    url = server.start()
    try:
        base = url.split("?")[0]
        assert get(url)[0] == 200
        assert get(base)[0] == 403
        assert get(base + "?token=wrong")[0] == 403
        assert get(base + "events")[0] == 403
        assert get(base + "actions/abort", method="POST", body=b"{}")[0] == 403
        assert get(base + "actions/abort?token=" + server.token[:-1], method="POST", body=b"{}")[0] == 403
        assert asked == []
        assert get(url, host="evil.example:80")[0] == 403  # a page elsewhere rebinding its name
        assert get(url.replace("/?", "/actions/abort?"), method="POST", body=b"{}")[0] == 200
        assert asked == ["x"]
        assert get(url.replace("/?", "/actions/nothing?"), method="POST", body=b"{}")[0] == 404
        assert server.token in get(url)[1].decode()
    finally:
        server.stop()


def test_the_stream_replays_what_was_published_then_goes_live() -> None:
    feed = Feed(time.monotonic())
    server = PageServer(feed, lambda token: "", {})
    url = server.start()
    try:
        feed.publish(PageEvent("stage", {"t": 0.1, "stage": "one"}))
        got: list[tuple[str, dict[str, Any]]] = []
        reader = threading.Thread(target=lambda: got.extend(read_events(url, 2)))
        reader.start()
        time.sleep(0.3)
        feed.publish(PageEvent("fault", {"t": 0.2, "op": "applied", "name": "a\nb </script>"}))
        reader.join(6)
        assert got == [
            ("stage", {"t": 0.1, "stage": "one"}),
            ("fault", {"t": 0.2, "op": "applied", "name": "a\nb </script>"}),
        ]
    finally:
        server.stop()


# -- a run's page ------------------------------------------------------------------------------


def test_a_run_page_streams_the_run_and_its_abort_rolls_everything_back(tmp_path: Path) -> None:
    starter = fake()
    running = web_run(files(tmp_path, scenario(LONG)), starter, tmp_path / "run")
    url = running.url()
    events = read_events(url, 4, timeout=15)  # run, target started, …, the fault applied
    while not any(name == "fault" for name, _ in events):
        events += read_events(url, len(events) + 1, timeout=10)[len(events) :]
    names = [name for name, _ in events]
    assert names[0] == "run"
    run = events[0][1]
    assert [p["name"] for p in run["phases"]] == ["slower"]
    pressed = time.monotonic()
    status, body = get(url.replace("/?", "/actions/abort?"), method="POST", body=b"{}")
    assert status == 200, body
    outcome = running.wait(30)
    took = time.monotonic() - pressed
    assert outcome.exit_code == ExitCode.ABORTED
    assert outcome.reason == "aborted from the game-day page"
    assert_rolled_back_and_ended(outcome, starter)
    assert took < 2.0 + 1.0  # the revert is within 2 s (measured in the browser test); the run then ends
    assert any(r.get("rollback") for r in records(outcome, "fault-reverted"))
    (page,) = records(outcome, "web-page")
    assert page["port"] == urlsplit(url).port and "token" not in json.dumps(page)
    with pytest.raises(OSError):  # the page server stopped with the run
        get(url)


def test_a_run_of_two_phases_with_its_page_completes(tmp_path: Path) -> None:
    starter = fake()
    running = web_run(files(tmp_path, scenario(TWO)), starter, tmp_path / "run")
    running.url()
    outcome = running.wait(30)
    assert outcome.exit_code in (ExitCode.OK, ExitCode.OBJECTIVES_FAILED), outcome.reason
    assert_rolled_back_and_ended(outcome, starter)


# -- the stack's form ----------------------------------------------------------------------------


def test_the_stack_form_is_read_as_bascule_inject_reads_its_arguments() -> None:
    fault, selector, hold = parse_fault_form(
        {
            "kind": "http-error",
            "params": {"statuses": "[502, 503]", "ratio": "0.5"},
            "component": "llm",
            "region": "",
            "hold": "30s",
        }
    )
    assert fault.kind == "http-error" and fault.statuses == (502, 503) and fault.ratio == 0.5  # type: ignore[attr-defined]
    assert selector.component == "llm" and selector.region is None
    assert hold == 30.0
    _, linked, forever = parse_fault_form(
        {"kind": "partition", "selector": "{link: [aws/us-east-1, scaleway/fr-par]}", "hold": ""}
    )
    assert forever is None and linked.link is not None
    for form, message in [
        ({"kind": "meteor"}, "unknown fault kind"),
        ({"kind": "latency", "params": {"fixed": "soon"}, "component": "llm"}, "fault 'latency'"),
        ({"kind": "crash"}, "say what the fault acts on"),
        ({"kind": "crash", "component": "llm", "hold": "-3s"}, "hold"),
    ]:
        with pytest.raises(ActionError, match=message):
            parse_fault_form(form)
