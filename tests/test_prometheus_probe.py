"""The ``prometheus`` probe and the ``probe`` guardrail: the answer's check (pure), the guardrail's
streaks (pure), and both against a real Prometheus scraping an exporter the test controls — as the
steady state of a run, and as its stop condition."""

from __future__ import annotations

import asyncio
import threading
import time
from pathlib import Path

import httpx
import pytest
from prometheus_server import NEEDS_PROMETHEUS, SCRAPE, Prometheus, prometheus  # noqa: F401 (the fixture)

from bascule.errors import ScenarioError
from bascule.exit_codes import ExitCode
from bascule.model.loading import parse_scenario
from bascule.model.probes import PrometheusProbe as Spec
from bascule.model.scenario import ProbeGuardrail
from bascule.probes.base import ProbeContext, make_probe, sample_once
from bascule.probes.prometheus import check_answer
from bascule.runner.guardrails import GuardrailMonitor
from tests.test_probes import APS
from tests.test_run_logic import fake_registered, records, run  # noqa: F401 (the fixture)

SLO = Spec(url="http://127.0.0.1:9", query="slo_error_ratio", below=0.01)


def vector(*values: float) -> dict[str, object]:
    result = [
        {"metric": {"__name__": "slo_error_ratio", "region": f"r{i}"}, "value": [1.0, str(v)]}
        for i, v in enumerate(values)
    ]
    return {"status": "success", "data": {"resultType": "vector", "result": result}}


def test_check_answer_holds_when_every_series_is_within_the_threshold() -> None:
    assert check_answer(SLO, vector(0.001, 0.009)) is None
    assert (
        check_answer(SLO, vector(0.001, 0.02)) == 'slo_error_ratio{region="r1"} = 0.02; expected below 0.01'
    )
    assert check_answer(SLO, vector(float("nan"))) is not None
    assert check_answer(SLO, vector()) == "no series: the query returned nothing"
    assert check_answer(Spec(url="http://x", query="ALERTS", empty="pass"), vector()) is None
    band = Spec(url="http://x", query="up", above=0.5, below=2)
    assert check_answer(band, vector(1)) is None and check_answer(band, vector(0)) is not None
    scalar = {"status": "success", "data": {"resultType": "scalar", "result": [1.0, "0.5"]}}
    assert check_answer(SLO, scalar) == "scalar = 0.5; expected below 0.01"
    error = {"status": "error", "errorType": "bad_data", "error": "parse error"}
    assert check_answer(SLO, error) == "Prometheus: bad_data: parse error"
    matrix = {"status": "success", "data": {"resultType": "matrix", "result": []}}
    assert "instant vector" in str(check_answer(SLO, matrix))


def test_a_threshold_is_required_and_the_band_must_be_open() -> None:
    with pytest.raises(ValueError, match="give `below`"):
        Spec(url="http://x", query="up")
    with pytest.raises(ValueError, match="must be less than"):
        Spec(url="http://x", query="up", above=2, below=1)


def test_the_probe_guardrail_trips_after_its_streak_and_a_success_resets_it() -> None:
    monitor = GuardrailMonitor((ProbeGuardrail(probe="slo", **{"for": 1.0}),), 0.99)
    assert monitor.watched_probes == {"slo"}
    assert monitor.observe_sample("slo", False, 10.0, 10.1, "high") is None
    assert monitor.observe_sample("slo", True, 10.5, 10.6, None) is None  # the streak ends
    assert monitor.observe_sample("slo", False, 11.0, 11.1, "high") is None
    assert monitor.observe_sample("slo", True, 10.9, 11.5, None) is None  # older than the streak
    trip = monitor.observe_sample("slo", False, 11.9, 12.0, "high")
    assert trip is not None and trip.guardrail == "probe" and trip.at == 12.0
    assert trip.reason == "probe 'slo' failing for 1.0 s: high"
    assert monitor.observe_sample("other", False, 0.0, 99.0, "x") is None


def test_a_probe_guardrail_must_name_a_steady_state_probe() -> None:
    text = """id: s
title: t
steady_state:
  probes: [{kind: http, url: /healthz, name: health}]
phases:
  - {name: p, at: 0s, for: 1s, fault: {kind: latency, fixed: 1ms}, target: {component: gateway}}
guardrails:
  - {kind: probe, probe: slo, for: 2s}
"""
    with pytest.raises(ScenarioError) as info:
        parse_scenario(text, "s.yaml")
    (problem,) = info.value.problems
    assert problem.line == 8
    assert (
        "no steady-state probe is named 'slo'" in problem.message
        and "named probes: health" in problem.message
    )


@pytest.mark.slow
@NEEDS_PROMETHEUS
def test_the_probe_asks_a_real_prometheus(prometheus: Prometheus) -> None:  # noqa: F811
    context = ProbeContext(APS, client_factory=lambda: httpx.AsyncClient(trust_env=False))
    probe = make_probe(Spec(url=prometheus.url, query="max(slo_error_ratio)", below=0.01), context)

    def one() -> tuple[bool, str | None]:
        async def go() -> tuple[bool, str | None]:
            async with context.client_factory() as client:
                sample = await sample_once(probe, client, time.monotonic())
                return sample.ok, sample.error

        return asyncio.run(go())

    assert one() == (True, None)
    prometheus.exporter.values['slo_error_ratio{region="fr-par"}'] = 0.2
    deadline = time.monotonic() + 10 * SCRAPE + 5
    while (seen := one())[0] and time.monotonic() < deadline:
        time.sleep(SCRAPE / 2)
    assert seen == (False, "{} = 0.2; expected below 0.01")


SCENARIO = """
id: slo-guarded
title: a steady state and a stop condition in PromQL
design: design.yaml
replay: {{time_scale: 1, min_phase: 0.1s}}
warm_up: 0s
settle: 0.1s
steady_state:
  probes:
    - {{kind: prometheus, name: slo, url: "{url}", query: "max(slo_error_ratio)", below: 0.01, rate: 10}}
  over: 0.5s
phases:
  - {{name: slower, at: 0s, for: 20s, fault: {{kind: latency, fixed: 1ms}}, target: {{component: notes}}}}
guardrails:
  - {{kind: probe, probe: slo, for: 0.5s}}
weights: {{correctness: 0, durability: 0}}
"""


@pytest.mark.slow
@NEEDS_PROMETHEUS
def test_a_broken_slo_in_prometheus_aborts_the_run_within_two_periods_and_a_scrape(
    tmp_path: Path,
    prometheus: Prometheus,  # noqa: F811
) -> None:
    broke: list[float] = []

    def break_slo_once_the_plan_runs() -> None:
        journal = tmp_path / "run" / "journal.jsonl"
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if journal.is_file() and '"plan-started"' in journal.read_text():
                noticed = time.monotonic()  # the plan started up to a poll (+ a read) before
                time.sleep(1.0)
                prometheus.exporter.values['slo_error_ratio{region="fr-par"}'] = 0.5
                broke.append(time.monotonic() - noticed)
                return
            time.sleep(0.05)

    breaker = threading.Thread(target=break_slo_once_the_plan_runs, daemon=True)
    breaker.start()
    outcome, _ = run(tmp_path, SCENARIO.format(url=prometheus.url))
    breaker.join(5)
    assert outcome.exit_code == ExitCode.ABORTED, outcome.reason
    assert outcome.reason.startswith("guardrail probe: probe 'slo' failing for")
    (trip,) = records(outcome, "guardrail-tripped")
    # From the exporter's change: a scrape for Prometheus to see it, then `for` (0.5 s) of failing
    # samples at 10 Hz — within 2 probe periods; `window_end` is in run seconds, like `t`.
    assert broke, "the plan never started"
    (plan,) = records(outcome, "plan-started")
    # At most this: the poll's lag makes it up to 0.2 s less.
    delay = trip["window_end"] - plan["t"] - broke[0]
    assert 0.5 - 0.2 - 0.2 <= delay <= 0.5 + SCRAPE + 2 * 0.1, (delay, trip)
    print(f"\nSLO broken → guardrail tripped: {delay:.2f} s (for: 0.5 s, scrape every {SCRAPE} s)")
