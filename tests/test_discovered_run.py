"""Acceptance (issue 14): a design whose sovereign region runs a service of its own that also calls
AWS STS, a host the design does not declare. The run lists it as a discovered dependency (aws, US,
foreign) with the data classes that reached it, and sovereignty fails because confidential requests
did; when only internal requests call it, it is listed and sovereignty holds. Every outside call
ends at bascule's egress on 127.0.0.1 (502, nothing relayed): the service's own log says so."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path
from typing import Any

import pytest

from bascule.ci.results import run_scored
from bascule.journal import read_journal
from bascule.runner.run import RunOptions
from bascule.targets.registry import choose

PAR = "scaleway/fr-par"
HERE = Path(__file__).resolve().parent / "discovered"

DESIGN = """
id: token-caller
title: a sovereign service that fetches a token from AWS STS
regions: [{{id: {par}}}]
components:
  api:
    entry: true
    command:
      argv: ["{{python}}", caller.py, --port, "{{port}}", --call-out-for, "{calling}"]
      ready: {{path: /healthz}}
    replicas: {{{par}: 1}}
"""

SCENARIO = """
id: token-call
title: a short latency fault while the service calls a token service outside the design
design: design.yaml
replay: {time_scale: 1, min_phase: 1s}
warm_up: 2s
settle: 1s
steady_state:
  probes:
    - {kind: http, url: /ask, data_class: confidential, rate: 5, headers: {x-data-class: confidential}}
    - {kind: http, url: /ask, data_class: internal, rate: 5, headers: {x-data-class: internal}}
  over: 1s
  success_ratio: 1.0
phases:
  - {name: slower api, at: 1s, for: 2s, fault: {kind: latency, fixed: 20ms}, target: {component: api}}
load:
  users: 2
  ramp_up: 1s
  think_time: 100ms
  mix: {data_classes: {internal: 0.5, confidential: 0.5}}
  requests:
    ask_path: /ask
    ask: {q: "{question}", data_class: "{data_class}"}
    questions: ["How long is the warranty on the circulation pumps?"]
objectives: {availability: 0.9}
weights: {correctness: 0, durability: 0}
"""

OUTCALL = re.compile(r"^outcall (\w+) (\S+) (.*)$")
REFUSED = "bascule does not relay requests outside the run: sts.amazonaws.com is not part of the design"


def run(
    tmp_path: Path, calling: str
) -> tuple[Any, dict[str, Any], dict[str, Any], list[tuple[str, str, str]]]:
    shutil.copy(HERE / "caller.py", tmp_path / "caller.py")
    (tmp_path / "design.yaml").write_text(DESIGN.format(par=PAR, calling=calling))
    (tmp_path / "scenario.yaml").write_text(SCENARIO)
    outcome = run_scored(
        RunOptions(
            scenario=tmp_path / "scenario.yaml",
            target=choose("local"),
            design=tmp_path / "design.yaml",
            out=tmp_path / "run",
            quiet=True,
        ),
        charts=False,
    )
    journal = list(read_journal(outcome.run_dir / "journal.jsonl"))
    (record,) = [r for r in journal if r["type"] == "discovered-dependencies"]
    result = json.loads((outcome.run_dir / "result.json").read_text())
    log = (outcome.run_dir / "logs" / "api-scaleway-fr-par-0.log").read_text().splitlines()
    calls = [m.groups() for line in log if (m := OUTCALL.match(line))]
    return outcome, record, result, calls


def sovereignty(result: dict[str, Any]) -> dict[str, Any]:
    (dim,) = [d for d in result["score"]["dimensions"] if d["name"] == "sovereignty"]
    return dim


def assert_every_call_ended_at_the_egress(dep: dict[str, Any], calls: list[tuple[str, str, str]]) -> None:
    assert calls, "the service made no outside call"
    # No byte left 127.0.0.1: every call the service made was answered by bascule's egress, and the
    # egress recorded as many requests as the service made.
    assert {status for _, status, _ in calls} == {"502"}
    assert all(REFUSED in body for _, _, body in calls)
    assert dep["requests"] == len(calls) and dep["tunnels"] == 0


@pytest.mark.slow
def test_confidential_requests_to_a_foreign_token_service_are_listed_and_fail_sovereignty(
    tmp_path: Path,
) -> None:
    outcome, record, result, calls = run(tmp_path, "confidential,internal")
    assert outcome.exit_code == 1 and outcome.reason == "objectives not met: sovereignty", outcome.reason
    (dep,) = record["dependencies"]
    assert (dep["host"], dep["provider"], dep["jurisdiction"], dep["sovereignty"]) == (
        "sts.amazonaws.com",
        "aws",
        "US",
        "foreign",
    )
    assert dep["regions"] == [PAR] and dep["askers"] == ["api-scaleway-fr-par-0"]
    assert_every_call_ended_at_the_egress(dep, calls)
    classes = dep["classes"]
    assert classes["confidential"] > 0 and classes["internal"] > 0, classes
    # Every call is tied to a request: answered, or in flight when the traffic stopped.
    assert dep["unattributed"] == 0 and dep["attributed"] + dep["unanswered"] == dep["requests"]
    # Each confidential request that reached it is one of the run's violations, and nothing else is.
    figures = result["figures"]
    assert dep["violations"] == classes["confidential"] == figures["sovereignty_violations"]
    assert {(v["data_class"], v["hop"]["component"], v["level"]) for v in result["violations"]} == {
        ("confidential", "sts.amazonaws.com", "foreign")
    }
    dim = sovereignty(result)
    assert dim["passed"] is False and dim["sub_score"] == 0
    (listed,) = result["discovered"]
    assert listed["classes"] == classes
    summary = (outcome.run_dir / "summary.md").read_text()
    assert (
        "🔎 sts.amazonaws.com — Amazon Web Services (aws), US law, foreign: reached from scaleway/fr-par"
        in summary
    )
    print(next(line for line in summary.splitlines() if "🔎" in line))


@pytest.mark.slow
def test_when_only_internal_requests_call_it_it_is_listed_and_sovereignty_holds(tmp_path: Path) -> None:
    outcome, record, result, calls = run(tmp_path, "internal")
    assert outcome.exit_code == 0, outcome.reason
    (dep,) = record["dependencies"]
    assert (dep["host"], dep["provider"], dep["jurisdiction"], dep["sovereignty"]) == (
        "sts.amazonaws.com",
        "aws",
        "US",
        "foreign",
    )
    assert_every_call_ended_at_the_egress(dep, calls)
    assert set(dep["classes"]) == {"internal"} and dep["violations"] == 0
    assert {c for c, _, _ in calls} == {"internal"}
    dim = sovereignty(result)
    assert dim["passed"] is True and dim["measured"] == 0
    assert "judged over" in dim["explanation"]
    assert result["figures"]["sovereignty_violations"] == 0
