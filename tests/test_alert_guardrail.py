"""The ``alert`` guardrail: which alerts of an answer fire (pure, both APIs), its streaks (pure),
and against a real Prometheus evaluating a rule and a real Alertmanager it sends to — a run that
aborts when the named alert fires, and a silence that keeps it going."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_server import (
    NEEDS_ALERTMANAGER,
    NEEDS_PROMETHEUS,
    SCRAPE,
    Exporter,
    require_prometheus,
    running_alertmanager,
    running_prometheus,
    serving,
)

from bascule.errors import ScenarioError
from bascule.exit_codes import ExitCode
from bascule.model.loading import parse_scenario
from bascule.model.scenario import AlertGuardrail
from bascule.probes.alerts import AlertReading, AlertWatch, firing
from bascule.runner.guardrails import GuardrailMonitor
from tests.test_run_logic import fake_registered, records, run  # noqa: F401 (the fixture)

PAGE = AlertGuardrail(url="http://127.0.0.1:9", alerts=("SloBroken",))


def prometheus_alerts(*alerts: tuple[str, str, dict[str, str]]) -> dict[str, object]:
    """A ``/api/v1/alerts`` answer: (name, state, other labels) per alert."""
    listed = [
        {"labels": {"alertname": name, **labels}, "annotations": {}, "state": state, "value": "1e+00"}
        for name, state, labels in alerts
    ]
    return {"status": "success", "data": {"alerts": listed}}


def test_prometheus_firing_alerts_are_named_with_their_labels_and_pending_ones_are_not() -> None:
    answer = prometheus_alerts(
        ("SloBroken", "firing", {"region": "fr-par", "severity": "page"}),
        ("SloBroken", "pending", {"region": "us-east-1"}),
        ("DiskFull", "firing", {}),
    )
    assert firing(PAGE, answer) == ('SloBroken{region="fr-par",severity="page"}',)
    by_label = AlertGuardrail(url="http://x", labels={"severity": "page"})
    assert firing(by_label, answer) == ('SloBroken{region="fr-par",severity="page"}',)
    both = AlertGuardrail(url="http://x", alerts=("SloBroken", "DiskFull"), labels={"region": "fr-par"})
    assert firing(both, answer) == ('SloBroken{region="fr-par",severity="page"}',)
    assert firing(PAGE, prometheus_alerts()) == ()


def test_alertmanager_active_alerts_fire_and_silenced_or_inhibited_ones_do_not() -> None:
    spec = AlertGuardrail(url="http://x", api="alertmanager", alerts=("SloBroken",))

    def alert(state: str, region: str) -> dict[str, object]:
        return {
            "labels": {"alertname": "SloBroken", "region": region},
            "status": {"state": state, "silencedBy": [], "inhibitedBy": []},
        }

    answer = [alert("active", "fr-par"), alert("suppressed", "us-east-1")]
    assert firing(spec, answer) == ('SloBroken{region="fr-par"}',)


def test_an_answer_of_another_kind_says_why_it_cannot_be_read() -> None:
    assert firing(PAGE, {"status": "error", "errorType": "bad_data", "error": "nope"}) == (
        "Prometheus: bad_data: nope"
    )
    assert "is http://127.0.0.1:9 a prometheus?" in str(firing(PAGE, {"status": "success", "data": {}}))
    manager = AlertGuardrail(url="http://127.0.0.1:9", api="alertmanager", alerts=("X",))
    assert "an alertmanager?" in str(firing(manager, {"status": "success"}))
    assert firing(PAGE, prometheus_alerts() | {"data": {"alerts": [{"state": "firing"}]}}) == (
        "an alert of the answer has no labels"
    )


def test_the_guardrail_needs_alerts_or_labels_and_a_url() -> None:
    with pytest.raises(ValueError, match="name the `alerts`"):
        AlertGuardrail(url="http://127.0.0.1:9090")
    with pytest.raises(ValueError):
        AlertGuardrail(url="127.0.0.1:9090", alerts=("X",))


def test_a_streak_of_firing_reads_trips_after_for_and_a_quiet_read_ends_it() -> None:
    spec = AlertGuardrail.model_validate({"url": "http://x", "alerts": ["SloBroken"], "for": "2s"})
    monitor = GuardrailMonitor((spec,), 0.99)
    fired = ('SloBroken{region="fr-par"}',)
    assert monitor.observe_alerts(0, 10.0, 10.1, fired, None) is None
    assert monitor.observe_alerts(0, 11.0, 11.1, (), None) is None  # quiet: the streak ends
    assert monitor.observe_alerts(0, 12.0, 12.1, fired, None) is None
    assert monitor.observe_alerts(0, 13.0, 13.1, fired, None) is None
    trip = monitor.observe_alerts(0, 14.0, 14.1, fired, None)
    assert trip is not None
    assert (trip.guardrail, trip.at) == ("alert", 14.1)
    assert trip.reason == 'alert firing for 2.1 s: SloBroken{region="fr-par"}'


def test_an_unreadable_source_aborts_unless_told_to_ignore_it() -> None:
    strict = AlertGuardrail(url="http://127.0.0.1:9", alerts=("X",), name="pager")
    trip = GuardrailMonitor((strict,), 0.99).observe_alerts(0, 1.0, 1.2, (), "connection refused")
    assert trip is not None and trip.guardrail == "pager"
    assert trip.reason == "the alert source http://127.0.0.1:9 cannot be read: connection refused"
    lenient = strict.model_copy(update={"unreadable": "ignore"})
    monitor = GuardrailMonitor((lenient,), 0.99)
    assert monitor.observe_alerts(0, 1.0, 1.2, (), "connection refused") is None
    assert monitor.observe_alerts(0, 2.0, 2.2, ("X{}",), None) is not None


def test_a_scenario_with_an_alert_guardrail_loads_and_a_wrong_one_is_located(tmp_path: Path) -> None:
    text = SCENARIO.format(
        url="http://127.0.0.1:9090", prom="http://127.0.0.1:9090", api="prometheus", rate=2
    )
    scenario = parse_scenario(text, "s.yaml")
    (guardrail,) = scenario.guardrails
    assert isinstance(guardrail, AlertGuardrail) and guardrail.alerts == ("SloBroken",)
    with pytest.raises(ScenarioError) as caught:
        parse_scenario(text.replace("alerts: [SloBroken], ", ""), "s.yaml")
    assert "name the `alerts`" in str(caught.value) and "s.yaml:" in str(caught.value)


def test_the_watch_reads_a_source_at_its_rate_and_stops_by_its_deadline() -> None:
    """Against a closed port: every read is an error, made at the guardrail's rate, until the
    deadline passes — the watch stops by itself."""
    readings: list[AlertReading] = []
    spec = AlertGuardrail(url="http://127.0.0.1:9", alerts=("X",), rate=10, timeout=0.5)
    watch = AlertWatch([(0, spec)], readings.append, deadline=time.monotonic() + 0.55)
    watch.start()
    time.sleep(1.0)
    assert not any(t.is_alive() for t in watch._threads), "the watch outlived its deadline"
    watch.stop()
    assert 4 <= len(readings) <= 7, len(readings)
    assert all(r.error is not None and not r.firing for r in readings)


RULES = """
groups:
  - name: slo
    interval: 1s
    rules:
      - alert: SloBroken
        expr: slo_error_ratio > 0.01
        labels: {severity: page}
"""

SCENARIO = """
id: alert-guarded
title: a stop condition on the team's own alert
design: design.yaml
replay: {{time_scale: 1, min_phase: 0.1s}}
warm_up: 0s
settle: 0.1s
steady_state:
  probes: [{{kind: prometheus, url: "{prom}", query: "count(slo_error_ratio)", above: 0, rate: 5}}]
phases:
  - {{name: slower, at: 0s, for: 20s, fault: {{kind: latency, fixed: 1ms}}, target: {{component: notes}}}}
guardrails:
  - {{kind: alert, url: "{url}", api: {api}, alerts: [SloBroken], rate: {rate}}}
weights: {{correctness: 0, durability: 0}}
"""


def _break_once_the_plan_runs(tmp_path: Path, exporter: Exporter, broke: list[float]) -> threading.Thread:
    def go() -> None:
        journal = tmp_path / "run" / "journal.jsonl"
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if journal.is_file() and '"plan-started"' in journal.read_text():
                noticed = time.monotonic()
                time.sleep(1.0)
                exporter.values['slo_error_ratio{region="fr-par"}'] = 0.5
                broke.append(time.monotonic() - noticed)
                return
            time.sleep(0.05)

    thread = threading.Thread(target=go, daemon=True)
    thread.start()
    return thread


def _wait_for_series(url: str) -> None:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        answer = httpx.get(f"{url}/api/v1/query", params={"query": "slo_error_ratio"}, timeout=2).json()
        if answer["data"]["result"]:
            return
        time.sleep(0.1)
    raise AssertionError("prometheus scraped nothing within 20 s")


@pytest.mark.slow
@NEEDS_PROMETHEUS
def test_a_firing_alert_in_prometheus_aborts_the_run(tmp_path: Path) -> None:
    require_prometheus()
    exporter = Exporter({'slo_error_ratio{region="fr-par"}': 0.001})
    broke: list[float] = []
    with serving(exporter) as target, running_prometheus(tmp_path, [target], rules=RULES) as url:
        _wait_for_series(url)
        breaker = _break_once_the_plan_runs(tmp_path, exporter, broke)
        outcome, _ = run(tmp_path, SCENARIO.format(url=url, prom=url, api="prometheus", rate=10))
        breaker.join(5)
    assert outcome.exit_code == ExitCode.ABORTED, outcome.reason
    assert outcome.reason == (
        'guardrail alert: alert firing: SloBroken{instance="' + target + '",job="tests",'
        'region="fr-par",severity="page"}'
    )
    (trip,) = records(outcome, "guardrail-tripped")
    seen = [r for r in records(outcome, "alerts") if r["firing"]]
    assert seen and seen[0]["error"] is None
    # A scrape to see the value, up to an evaluation (1 s) to fire, then a read (10 Hz).
    assert broke, "the plan never started"
    (plan,) = records(outcome, "plan-started")
    delay = trip["window_end"] - plan["t"] - broke[0]  # run seconds, from the plan's start
    assert 0.0 <= delay <= SCRAPE + 1.0 + 2 * 0.1 + 0.5, (delay, trip)
    print(f"\nalert fired → guardrail tripped: {delay:.2f} s after the value broke")


def _silence(alertmanager: str, name: str) -> str:
    now = time.time()
    body: dict[str, Any] = {
        "matchers": [{"name": "alertname", "value": name, "isRegex": False, "isEqual": True}],
        "startsAt": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now - 60)),
        "endsAt": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now + 3600)),
        "createdBy": "bascule tests",
        "comment": "a known alert during the game day",
    }
    response = httpx.post(f"http://{alertmanager}/api/v2/silences", json=body, timeout=5)
    response.raise_for_status()
    return str(response.json()["silenceID"])


@pytest.mark.slow
@NEEDS_PROMETHEUS
@NEEDS_ALERTMANAGER
def test_an_alert_prometheus_sends_to_alertmanager_aborts_the_run_unless_silenced(tmp_path: Path) -> None:
    require_prometheus()
    exporter = Exporter({'slo_error_ratio{region="fr-par"}': 0.001})
    broke: list[float] = []
    with (
        running_alertmanager(tmp_path) as manager,
        serving(exporter) as target,
        running_prometheus(tmp_path, [target], rules=RULES, alertmanager=manager) as url,
    ):
        _wait_for_series(url)
        breaker = _break_once_the_plan_runs(tmp_path, exporter, broke)
        scenario = SCENARIO.format(url=f"http://{manager}", prom=url, api="alertmanager", rate=10)
        outcome, _ = run(tmp_path, scenario)
        breaker.join(5)
        assert outcome.exit_code == ExitCode.ABORTED, outcome.reason
        assert outcome.reason.startswith("guardrail alert: alert firing: SloBroken{"), outcome.reason
        assert 'severity="page"' in outcome.reason
        (trip,) = records(outcome, "guardrail-tripped")
        (plan,) = records(outcome, "plan-started")
        delay = trip["window_end"] - plan["t"] - broke[0]
        print(f"\nalert fired → sent to Alertmanager → guardrail tripped: {delay:.2f} s")

        # The alert still fires; silenced in Alertmanager, it no longer stops a run.
        _silence(manager, "SloBroken")
        quiet = tmp_path / "silenced"
        quiet.mkdir()
        outcome, _ = run(quiet, scenario.replace("for: 20s", "for: 2s"))
        assert outcome.exit_code != ExitCode.ABORTED, outcome.reason
        assert records(outcome, "guardrail-tripped") == []
        assert [r["firing"] for r in records(outcome, "alerts")] == [[]]
