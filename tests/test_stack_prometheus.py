"""A real Prometheus scraping a running reference stack (the local target), found through the run's
``prometheus-targets.json``, and a steady state and stop condition written in PromQL on the
stack's own metrics: a healthy run passes it, a run whose fault breaks the SLO is aborted by it."""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_server import NEEDS_PROMETHEUS, SCRAPE, running_prometheus
from rich.console import Console

from bascule.exit_codes import ExitCode
from bascule.journal import read_journal
from bascule.runner.run import RunOptions, run_scenario
from bascule.targets.local.scrape import SCRAPE_TARGETS_FILE
from bascule.targets.registry import choose
from tests.test_timeline import Collector, attributes

ROOT = Path(__file__).resolve().parent.parent
DESIGN = ROOT / "designs" / "single-region.yaml"
WINDOW = 3.0
"""The range of the SLO's rates, in seconds."""
PERIOD = 0.2
"""The probe's period (rate 5)."""
FOR = 1.0
"""The guardrail's ``for``."""

ERROR_RATIO = (
    f'(sum(rate(bascule_stack_requests_total{{component="gateway",route="/v1/ask",status=~"5.."}}[{WINDOW:g}s]))'
    " or vector(0))"
    f' / (sum(rate(bascule_stack_requests_total{{component="gateway",route="/v1/ask"}}[{WINDOW:g}s]))'
    " or vector(1))"
)
"""5xx answers of the gateways over their asks; 0 before the first scrape, for the guardrail watches
from the probes' first sample, before Prometheus has found the stack."""

SCENARIO = """
id: stack-slo-{name}
title: the gateways' error ratio, from Prometheus, as steady state and stop condition
design: {design}
replay: {{time_scale: 1, min_phase: 0.5s}}
warm_up: 6s
settle: 1s
steady_state:
  probes:
    - kind: prometheus
      name: gateway-errors
      url: "{url}"
      query: '{query}'
      below: 0.05
      rate: {rate:g}
    - kind: prometheus
      name: scraped
      url: "{url}"
      query: 'count(up{{bascule_component="gateway"}} == 1)'
      above: 1.5
  over: 1s
phases:
  - {{name: "{name}", at: 1s, for: 6s, fault: {fault}, target: {{component: retriever}}}}
guardrails:
  - {{kind: probe, probe: gateway-errors, for: {for_:g}s}}
load:
  users: 3
  ramp_up: 1s
  mix: {{data_classes: {{internal: 1.0}}, writes: 0}}
"""


def run(
    tmp_path: Path, prometheus: str, name: str, fault: str, timeline: str | None = None
) -> tuple[int, str, list[dict[str, Any]]]:
    scenario = tmp_path / f"{name}.yaml"
    scenario.write_text(
        SCENARIO.format(
            name=name,
            design=DESIGN,
            url=prometheus,
            query=ERROR_RATIO,
            rate=1 / PERIOD,
            fault=fault,
            for_=FOR,
        )
    )
    options = RunOptions(
        scenario=scenario, target=choose("local"), out=tmp_path / name, quiet=True, otlp_timeline=timeline
    )
    with open(os.devnull, "w") as sink:
        outcome = run_scenario(options, console=Console(file=sink))
    return outcome.exit_code, outcome.reason, list(read_journal(tmp_path / name / "journal.jsonl"))


def query(prometheus: str, promql: str) -> list[dict[str, Any]]:
    answer = httpx.get(f"{prometheus}/api/v1/query", params={"query": promql}, timeout=5).json()
    assert answer["status"] == "success", answer
    result: list[dict[str, Any]] = answer["data"]["result"]
    return result


@pytest.mark.slow
@NEEDS_PROMETHEUS
@pytest.mark.timeout(240)
def test_a_promql_slo_on_the_stack_holds_when_healthy_and_aborts_the_run_when_it_breaks(
    tmp_path: Path,
) -> None:
    # Both runs write their targets where this Prometheus looks (one run directory at a time).
    targets = tmp_path / "targets.json"
    with running_prometheus(tmp_path, [], file_sd=targets) as prometheus:
        # Healthy: a latency of 1 ms on the retriever leaves the SLO whole; the run completes.
        healthy_dir = tmp_path / "healthy"
        healthy_dir.mkdir()
        targets.symlink_to(healthy_dir / SCRAPE_TARGETS_FILE)
        code, reason, journal = run(tmp_path, prometheus, "healthy", "{kind: latency, fixed: 1ms}")
        assert code == ExitCode.OK, reason
        checks = [r for r in journal if r["type"] == "hypothesis"]
        assert [c["failures"] for c in checks] == [[], []]
        assert [(r["when"], r["ok"]) for r in checks] == [("before", True), ("after", True)]
        assert not [r for r in journal if r["type"] == "guardrail-tripped"]
        # What Prometheus scraped: every serving replica (2 gateways, a retriever, a store, an llm).
        ups = query(prometheus, 'up{job="tests"}[1m]')
        assert {s["metric"]["bascule_component"] for s in ups} == {"gateway", "retriever", "store", "llm"}
        assert len(ups) == 5
        # The stack has stopped: its series are stale now, but were scraped over the last minute.
        served = query(
            prometheus,
            "sum by (upstream, upstream_region) (max_over_time(bascule_gateway_upstream_served_total[1m]))",
        )
        assert {(s["metric"]["upstream"], s["metric"]["upstream_region"]) for s in served} == {
            ("retriever", "aws/us-east-1"),
            ("llm", "aws/us-east-1"),
            ("store", "aws/us-east-1"),  # the canary writes
        }
        assert query(prometheus, "bascule_gateway_breaker_state[1m]")
        assert query(prometheus, "bascule_stack_request_duration_seconds_bucket[1m]")

        # Broken: every retriever call answers 503, so the gateways answer 503 too.
        targets.unlink()
        broken_dir = tmp_path / "broken"
        broken_dir.mkdir()
        targets.symlink_to(broken_dir / SCRAPE_TARGETS_FILE)
        fault = "{kind: http-error, statuses: [503], ratio: 1.0}"
        collector = Collector()
        serving = threading.Thread(target=collector.server.serve_forever, args=(0.05,), daemon=True)
        serving.start()
        try:
            code, reason, journal = run(tmp_path, prometheus, "broken", fault, collector.url)
        finally:
            collector.server.shutdown()
            collector.server.server_close()
    assert code == ExitCode.ABORTED, reason
    assert reason.startswith("guardrail probe: probe 'gateway-errors' failing for"), reason
    (applied,) = [r for r in journal if r["type"] == "fault-applied"]
    (trip,) = [r for r in journal if r["type"] == "guardrail-tripped"]
    (plan,) = [r for r in journal if r["type"] == "plan-started"]
    delay = trip["window_end"] - plan["t"] - applied["actual"]  # run seconds; `actual` is plan seconds
    # Errors reach Prometheus at its next scrape; the ratio over the window passes 5 % within a
    # scrape or two; then the guardrail's `for` of failing samples, to a probe period.
    bound = FOR + 2 * PERIOD + WINDOW + SCRAPE
    print(f"\nSLO broken → guardrail tripped {delay:.2f} s after the fault (bound {bound:.1f} s)")
    assert FOR <= delay <= bound, (delay, trip)
    # The same game day in a trace backend: the phase, reverted by the rollback, and the trip.
    (root,) = [s for s in collector.spans if not s.parent_span_id]
    assert root.name == "bascule run stack-slo-broken"
    assert attributes(root.attributes)["bascule.target"] == "local"
    (phase,) = [s for s in collector.spans if s.name == "phase: broken"]
    assert [e.name for e in phase.events] == ["fault-applied", "fault-reverted"]
    assert attributes(phase.events[1].attributes)["bascule.fault.rollback"] is True
    assert [e.name for e in root.events if e.name == "guardrail-tripped"] == ["guardrail-tripped"]
