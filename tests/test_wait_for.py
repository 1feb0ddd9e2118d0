"""``steady_state.wait_for``: before any fault, the hypothesis first waits (bounded) until every
probe has succeeded once, so that a service still warming up is not judged cold — and says so
when it never answers."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from functools import partial
from pathlib import Path
from typing import Any

import httpx
import pytest
from fake_target import COLD_FOR, ENTRY
from rich.console import Console

from bascule.exit_codes import ExitCode
from bascule.journal import read_journal
from bascule.model.loading import parse_design
from bascule.model.probes import HttpProbe
from bascule.probes.base import ProbeContext, make_probes
from bascule.probes.runner import check_hypothesis
from bascule.reports.files import score_run
from bascule.runner.run import RunOptions, RunOutcome, run_scenario
from bascule.targets import registry
from bascule.targets.registry import choose

PAR = "scaleway/fr-par"
DESIGN = f"""
id: fake-one
regions: [{{id: {PAR}}}]
components:
  notes:
    entry: true
    url: {{{PAR}: "http://127.0.0.1:9"}}
    replicas: {{{PAR}: 1}}
"""


def scenario(wait_for: str | None) -> str:
    waiting = f"\n  wait_for: {wait_for}" if wait_for is not None else ""
    return f"""
id: fake-run
title: a cold service on the fake target
design: design.yaml
replay: {{time_scale: 1, min_phase: 0.1s}}
warm_up: 0s
settle: 0.1s
steady_state:
  probes: [{{kind: http, url: /healthz, rate: 20, timeout: 2s}}]
  over: 0.4s
  success_ratio: 1.0{waiting}
phases:
  - {{name: slower, at: 0s, for: 0.2s, fault: {{kind: latency, fixed: 10ms}}, target: {{component: notes}}}}
objectives: {{availability: 0.5}}
weights: {{correctness: 0, durability: 0}}
"""


@pytest.fixture(autouse=True)
def fake_registered(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setitem(registry.TARGETS, ENTRY.name, ENTRY)
    yield


def run_cold(tmp_path: Path, wait_for: str | None) -> RunOutcome:
    (tmp_path / "design.yaml").write_text(DESIGN)
    (tmp_path / "scenario.yaml").write_text(scenario(wait_for))
    options = RunOptions(
        tmp_path / "scenario.yaml", choose("fake", {"fake_fail": "cold"}), out=tmp_path / "run", quiet=True
    )
    with open(os.devnull, "w") as sink:
        return run_scenario(options, console=Console(file=sink), scoring=partial(score_run, min_score=None))


def hypotheses(outcome: RunOutcome) -> list[dict[str, Any]]:
    return [r for r in read_journal(outcome.run_dir / "journal.jsonl") if r["type"] == "hypothesis"]


def test_a_cold_service_fails_the_hypothesis_judged_at_once(tmp_path: Path) -> None:
    outcome = run_cold(tmp_path, wait_for=None)
    assert outcome.reason is not None
    assert outcome.reason.startswith("the steady-state hypothesis failed before any fault: ")
    (before,) = hypotheses(outcome)
    # Judged at once, over the samples of a service still answering 503: no waiting said.
    assert before["ok"] is False and "wait_for" not in before["summary"] and "after" not in before["summary"]


def test_waiting_for_a_cold_service_judges_it_once_it_answers(tmp_path: Path) -> None:
    outcome = run_cold(tmp_path, wait_for="10s")
    assert outcome.exit_code == ExitCode.OK, outcome.reason
    before, after = hypotheses(outcome)
    assert before["ok"] is True and after["ok"] is True
    waited = float(before["summary"].split(" after ")[1].split(" s ")[0])
    assert COLD_FOR - 0.5 <= waited < 10, before["summary"]
    # The waiting samples are journaled (their 503s among them) but not judged.
    samples = [r for r in read_journal(outcome.run_dir / "journal.jsonl") if r["type"] == "sample"]
    assert any(not s["ok"] for s in samples)


def test_a_wait_that_runs_out_says_the_service_never_answered(tmp_path: Path) -> None:
    outcome = run_cold(tmp_path, wait_for="0.5s")
    assert outcome.reason is not None
    assert outcome.reason.startswith("the steady-state hypothesis failed before any fault: ")
    (before,) = hypotheses(outcome)
    assert before["ok"] is False
    assert "never answered within wait_for (0.5 s)" in before["summary"], before["summary"]
    assert "no success within wait_for" in before["failures"][0]


def test_check_hypothesis_waits_at_the_probes_rate_and_no_longer_than_needed() -> None:
    began = time.monotonic()
    asked: list[float] = []

    def handler(request: httpx.Request) -> httpx.Response:
        asked.append(time.monotonic() - began)
        return httpx.Response(200 if time.monotonic() - began > 0.6 else 503)

    def client() -> httpx.AsyncClient:
        return httpx.AsyncClient(transport=httpx.MockTransport(handler))

    ctx = ProbeContext(parse_design(DESIGN), entries={PAR: "http://par.test"}, client_factory=client)
    probes = make_probes([HttpProbe(url="/healthz", rate=10)], ctx)
    result = check_hypothesis(probes, ctx, over=0.3, success_ratio=1.0, wait_for=5.0)
    assert result.ok, result.summary()
    assert 0.5 <= result.waited < 1.5 and len(result.samples) >= 2
    # Polled at the probe's rate while waiting: about 10 Hz, not a busy loop.
    waiting = [t for t in asked if t < result.waited]
    assert 4 <= len(waiting) <= 12, waiting
