"""The Grafana dashboard for `--metrics-port` (deploy/grafana/bascule-game-day.json): its shape as
Grafana's import expects it, and every panel's and annotation's PromQL answering with data from a
real Prometheus scraping a run."""

from __future__ import annotations

import json
import re
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_server import NEEDS_PROMETHEUS, SCRAPE, free_port, running_prometheus

from bascule.exit_codes import ExitCode
from tests.test_run_logic import fake, fake_registered, files, records  # noqa: F401 (the fixture)

ROOT = Path(__file__).resolve().parent.parent
DASHBOARD = json.loads((ROOT / "deploy" / "grafana" / "bascule-game-day.json").read_text())
DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}


def queries() -> list[tuple[str, str]]:
    """(where, expr) of every panel target and annotation."""
    found = [(p["title"], t["expr"]) for p in DASHBOARD["panels"] for t in p["targets"]]
    found += [(a["name"], a["expr"]) for a in DASHBOARD["annotations"]["list"] if "expr" in a]
    return found


def concrete(expr: str) -> str:
    """Grafana's variables as it would fill them: every scenario and design, a short rate window."""
    return expr.replace("$scenario", ".*").replace("$design", ".*").replace("$__rate_interval", "5s")


def test_the_dashboard_has_the_shape_grafana_imports() -> None:
    assert DASHBOARD["uid"] == "bascule-run" and DASHBOARD["title"]
    assert isinstance(DASHBOARD["schemaVersion"], int) and DASHBOARD["schemaVersion"] >= 36
    variables = {v["name"]: v for v in DASHBOARD["templating"]["list"]}
    assert (
        variables["datasource"]["type"] == "datasource" and variables["datasource"]["query"] == "prometheus"
    )
    assert {"scenario", "design"} <= set(variables)
    ids = [p["id"] for p in DASHBOARD["panels"]]
    assert len(ids) == len(set(ids)) >= 6
    for panel in DASHBOARD["panels"]:
        assert panel["type"] in {"timeseries", "stat"}
        assert panel["datasource"] == DATASOURCE, panel["title"]
        assert (
            set(panel["gridPos"]) == {"h", "w", "x", "y"}
            and panel["gridPos"]["x"] + panel["gridPos"]["w"] <= 24
        )
        refs = [t["refId"] for t in panel["targets"]]
        assert refs and len(refs) == len(set(refs))
        assert all(t["datasource"] == DATASOURCE for t in panel["targets"])
    (faults,) = [a for a in DASHBOARD["annotations"]["list"] if a.get("expr")]
    assert faults["datasource"] == DATASOURCE and "bascule_active_faults" in faults["expr"]
    # Every metric a query names is one that --metrics-port serves.
    served = {
        "bascule_success_ratio",
        "bascule_latency_p95_seconds",
        "bascule_served_requests_total",
        "bascule_requests_total",
        "bascule_sovereignty_violations_total",
        "bascule_active_faults",
        "bascule_plan_elapsed_seconds",
    }
    for where, expr in queries():
        named = set(re.findall(r"\bbascule_[a-z0-9_]+", expr))
        assert named and named <= served, (where, named - served)


SCENARIO = """
id: dashboard-run
title: a run for the dashboard's queries
design: design.yaml
replay: {time_scale: 1, min_phase: 0.1s}
warm_up: 0s
settle: 0.1s
steady_state:
  probes: [{kind: http, url: /healthz, rate: 20, timeout: 2s}]
  over: 0.5s
phases:
  - {name: slower, at: 0s, for: 12s, fault: {kind: latency, fixed: 5ms}, target: {component: notes}}
weights: {correctness: 0, durability: 0}
"""


def _ask(prometheus: str, expr: str) -> list[dict[str, Any]]:
    answer = httpx.get(f"{prometheus}/api/v1/query", params={"query": concrete(expr)}, timeout=5).json()
    assert answer["status"] == "success", (expr, answer)
    return list(answer["data"]["result"])


@pytest.mark.slow
@NEEDS_PROMETHEUS
def test_every_query_of_the_dashboard_answers_from_a_real_prometheus_during_a_run(tmp_path: Path) -> None:
    import os
    from functools import partial

    from rich.console import Console

    from bascule.reports.files import score_run
    from bascule.runner.run import RunOptions, run_scenario

    port = free_port()
    answers: dict[str, int] = {}
    labels: list[str] = []
    with running_prometheus(tmp_path, [f"127.0.0.1:{port}"]) as prometheus:

        def ask_while_faults_are_in_force() -> None:
            journal = tmp_path / "run" / "journal.jsonl"
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                if journal.is_file() and '"fault-applied"' in journal.read_text():
                    break
                time.sleep(0.1)
            # Each query until it answers with data, while the 12 s phase lasts (a scrape that a busy
            # machine misses marks the target's series stale for a moment: asking once could fail).
            until = time.monotonic() + 10.0
            pending = dict(queries())
            while pending and time.monotonic() < until:
                for where, expr in list(pending.items()):
                    try:
                        count = len(_ask(prometheus, expr))
                    except httpx.HTTPError:  # a busy machine: ask again at the next round
                        continue
                    answers[where] = max(answers.get(where, 0), count)
                    if count:
                        del pending[where]
                time.sleep(SCRAPE / 2)
            values = httpx.get(f"{prometheus}/api/v1/label/scenario/values", timeout=5).json()
            labels.extend(values["data"])

        asker = threading.Thread(target=ask_while_faults_are_in_force, daemon=True)
        asker.start()
        options = RunOptions(
            files(tmp_path, SCENARIO), fake(), out=tmp_path / "run", quiet=True, metrics_port=port
        )
        with open(os.devnull, "w") as sink:
            outcome = run_scenario(
                options, console=Console(file=sink), scoring=partial(score_run, min_score=None)
            )
        asker.join(10)
    assert outcome.exit_code in (ExitCode.OK, ExitCode.OBJECTIVES_FAILED), outcome.reason
    assert records(outcome, "fault-applied")
    assert set(answers) == {where for where, _ in queries()}
    empty = [where for where, count in answers.items() if count == 0]
    assert not empty, f"no data for: {empty}"
    assert "dashboard-run" in labels
