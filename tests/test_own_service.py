"""The user's own services on the local target: a third-party server (Twisted's web server,
installed from PyPI) started as a ``command:`` component, a service already running fronted as a
``url:`` component, and the faults that can and cannot reach them."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from bascule.ci.results import run_scored
from bascule.errors import ScenarioError
from bascule.faults import ControlPlane, Crash, Dns, DnsAnswer, Latency
from bascule.journal import read_journal
from bascule.model.loading import parse_design, read_design
from bascule.model.selector import Selector
from bascule.plan.resolve import resolve
from bascule.runner.run import RunOptions
from bascule.stack.layout import layout
from bascule.targets.local.names import resolver_problem
from bascule.targets.local.stack import LocalStack
from bascule.targets.local.target import refusal
from bascule.targets.registry import choose

PAR = "scaleway/fr-par"
PROBE_PERIOD = 0.1


def twisted_design(site: Path) -> str:
    return f"""
id: third-party
title: Twisted's web server as the service under test
regions: [{{id: {PAR}}}]
components:
  files:
    entry: true
    command:
      argv: [{sys.executable}, -m, twisted, web, --listen, "tcp:{{port}}:interface={{host}}", --path, {site}]
      ready: {{path: /index.html}}
    replicas: {{{PAR}: 1}}
"""


SCENARIO = """
id: blackhole-in-front-of-twisted
title: a blackhole of known length in front of a third-party server
replay: {time_scale: 1, min_phase: 1s}
warm_up: 2s
settle: 3s
steady_state:
  probes:
    - {kind: http, url: /index.html, rate: 10, timeout: 300ms}
  success_ratio: 1.0
  over: 1s
phases:
  - name: packets to the server dropped
    at: 2s
    for: 4s
    fault: {kind: blackhole}
    target: {component: files, region: scaleway/fr-par}
objectives: {availability: 0.99, rto: 10s}
# Static files: no answers to grade and no writes to lose; left out on purpose.
weights: {correctness: 0, durability: 0}
"""


RUNS = 5


@pytest.mark.slow
def test_a_blackhole_before_a_third_party_server_is_measured_within_two_probe_periods(
    tmp_path: Path,
) -> None:
    """Five runs of a 4 s blackhole in front of Twisted: every time, the outage bascule reports
    starts and ends, and its RTO lasts, within 2 probe periods of the fault's true window."""
    site = tmp_path / "site"
    site.mkdir()
    (site / "index.html").write_text("<h1>floating solar</h1>\n")
    (tmp_path / "design.yaml").write_text(twisted_design(site))
    (tmp_path / "scenario.yaml").write_text(SCENARIO)
    table = []
    for attempt in range(RUNS):
        outcome = run_scored(
            RunOptions(
                scenario=tmp_path / "scenario.yaml",
                target=choose("local"),
                design=tmp_path / "design.yaml",
                out=tmp_path / f"run-{attempt}",
                quiet=True,
            ),
        )
        records = list(read_journal(outcome.run_dir / "journal.jsonl"))
        # 4 s without an answer in a 7 s impact window: availability misses its objective, nothing else.
        assert outcome.exit_code == 1 and outcome.reason == "objectives not met: availability", outcome.reason
        (applied,) = [r for r in records if r["type"] == "fault-applied"]
        (reverted,) = [r for r in records if r["type"] == "fault-reverted"]
        samples = [r for r in records if r["type"] == "sample" and r["source"].startswith("http")]
        # The revert acts a few ms before its record is written: the last period is the boundary.
        during = [s for s in samples if applied["t"] <= s["t"] < reverted["t"] - PROBE_PERIOD]
        assert during and not any(s["ok"] for s in during if s["t"] + s["latency"] > applied["t"] + 0.05)
        first_failed = min(s["t"] for s in samples if not s["ok"])
        last_failed_end = max(s["t"] for s in samples if not s["ok"])
        back = min(s["t"] for s in samples if s["ok"] and s["t"] > last_failed_end)
        # The raw samples: the first to fail started at most 2 probe periods after the fault…
        assert applied["t"] - PROBE_PERIOD <= first_failed <= applied["t"] + 2 * PROBE_PERIOD
        # …and the first to succeed again at most 2 probe periods after its end.
        assert reverted["t"] <= back + PROBE_PERIOD and back <= reverted["t"] + 2 * PROBE_PERIOD
        # What bascule reports, on the plan's clock: the phase's true window against the outage.
        result = json.loads((outcome.run_dir / "result.json").read_text())
        (phase,) = result["phases"]
        true_start, true_end = phase["actual_start"], phase["actual_end"]
        (outage,) = result["figures"]["outages"]
        row = (
            outage["start"] - true_start,
            outage["end"] - true_end,
            result["figures"]["rto"] - (true_end - true_start),
        )
        table.append(row)
        assert all(abs(x) <= 2 * PROBE_PERIOD for x in row), (attempt, row, outage, phase)
    print("\nrun: outage start, outage end, RTO − true length (s)")
    for attempt, row in enumerate(table):
        print(f"{attempt}: " + ", ".join(f"{x:+.3f}" for x in row))


class _Notes(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = json.dumps({"path": self.path}).encode()
        self.send_response(200)
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def running_service() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Notes)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def url_design(url: str) -> str:
    return f"""
id: fronted
regions: [{{id: {PAR}}}]
components:
  notes:
    entry: true
    url: {{{PAR}: "{url}"}}
    replicas: {{{PAR}: 1}}
"""


def test_a_running_service_is_fronted_by_a_route_that_faults_reach(
    running_service: str, tmp_path: Path
) -> None:
    text = url_design(running_service)
    design = parse_design(text, "d.yaml")
    (tmp_path / "d.yaml").write_text(text)
    stack = LocalStack.start(design, tmp_path / "d.yaml", tmp_path / "run")
    try:
        assert stack.supervisor.replicas() == [], "nothing to start: it runs already"
        entry = stack.entries()[PAR]
        assert httpx.get(entry + "/notes/1").json() == {"path": "/notes/1"}
        touch, problems = resolve(design, Latency(fixed=0.3), Selector(component="notes"), ())
        assert not problems and refusal(Latency(fixed=0.3), touch, stack.layout) is None
    finally:
        stack.stop()


def refusals_of(text: str, component: str) -> dict[str, str | None]:
    design = parse_design(text, "d.yaml")
    faults = {
        "crash": Crash(),
        "dns": Dns(answer=DnsAnswer.NXDOMAIN),
        "control-plane": ControlPlane(),
        "latency": Latency(fixed=0.2),
    }
    out: dict[str, str | None] = {}
    for kind, fault in faults.items():
        selector = Selector(region=PAR) if kind == "control-plane" else Selector(component=component)
        touch, problems = resolve(design, fault, selector, ())
        assert not problems, problems
        out[kind] = refusal(fault, touch, layout(design))
    return out


def test_what_cannot_reach_an_own_service_is_refused_with_the_reason(tmp_path: Path) -> None:
    fronted = refusals_of(url_design("http://127.0.0.1:9"), "notes")
    assert fronted["latency"] is None
    assert fronted["crash"] is not None and "url service" in fronted["crash"]
    assert fronted["control-plane"] is not None and "starts nothing" in fronted["control-plane"]
    assert fronted["dns"] is not None and "127.0.0.1" in fronted["dns"]
    started = refusals_of(twisted_design(tmp_path), "files")
    assert started["crash"] is None and started["control-plane"] is None and started["latency"] is None
    assert started["dns"] is not None and "blackhole or refuse" in started["dns"]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"calls": ["nowhere"]}, "unknown component 'nowhere'"),
        ({"command": {"argv": ["serve", "--port", "{prot}"]}}, "unknown placeholder {prot}"),
        ({"command": {"argv": ["serve"]}, "url": {PAR: "http://127.0.0.1:1"}}, "not both"),
        ({"url": {PAR: "https://notes.example.com"}}, "give http://HOST:PORT"),
    ],
)
def test_own_services_are_validated_with_the_reason(change: dict[str, Any], message: str) -> None:
    component: dict[str, Any] = {
        "entry": True,
        "command": {"argv": ["serve", "--port", "{port}"]},
        "replicas": {PAR: 1},
    }
    component.update(change)
    if "url" in change and "command" not in change:
        component.pop("command")
    text = json.dumps({"id": "own", "regions": [{"id": PAR}], "components": {"api": component}})
    with pytest.raises(ScenarioError) as info:
        parse_design(text, "d.yaml")
    assert any(message in p.message for p in info.value.problems), info.value.problems


def test_placeholders_fill_the_port_and_the_routes_to_callees(tmp_path: Path) -> None:
    text = f"""
id: two
regions: [{{id: {PAR}}}]
components:
  api:
    entry: true
    calls: [kv]
    command:
      argv: [serve, --port, "{{port}}", --name, "{{replica}}"]
      env: {{KV_URL: "{{kv.url}}/v1", KV_PORT: "{{kv.port}}", LITERAL: "{{{{x}}}}"}}
      cwd: app
    replicas: {{{PAR}: 1}}
  kv:
    command: {{argv: [kv, "{{port}}"]}}
    replicas: {{{PAR}: 1}}
"""
    (tmp_path / "d.yaml").write_text(text)
    design = read_design(tmp_path / "d.yaml")
    from bascule.stack.layout import own_command

    stack = layout(design)
    (api,) = [r for r in stack.replicas if r.component == "api"]
    ports = {r.name: 41000 + i for i, r in enumerate(stack.routes)}
    (call,) = [r for r in stack.routes if r.hop.source is not None]
    command = own_command(
        design, stack, api, port=40123, route_ports=ports, base_dir=str(tmp_path), data_dir=str(tmp_path)
    )
    assert command.argv == ("serve", "--port", "40123", "--name", "api-scaleway-fr-par-0")
    assert command.env == {
        "KV_URL": f"http://127.0.0.1:{ports[call.name]}/v1",
        "KV_PORT": str(ports[call.name]),
        "LITERAL": "{x}",
    }
    assert command.cwd == str(tmp_path / "app")


def test_the_otlp_placeholder_is_the_runs_trace_receiver_or_empty(tmp_path: Path) -> None:
    text = f"""
id: one
regions: [{{id: {PAR}}}]
components:
  api:
    entry: true
    command: {{argv: [serve, --otlp, "{{otlp.url}}"]}}
    replicas: {{{PAR}: 1}}
"""
    (tmp_path / "d.yaml").write_text(text)
    design = read_design(tmp_path / "d.yaml")
    from bascule.stack.layout import own_command

    stack = layout(design)
    (api,) = stack.replicas
    for endpoint, filled in (("http://127.0.0.1:4318", "http://127.0.0.1:4318"), (None, "")):
        command = own_command(
            design,
            stack,
            api,
            port=40123,
            route_ports={},
            base_dir=str(tmp_path),
            data_dir=str(tmp_path),
            otlp_endpoint=endpoint,
        )
        assert command.argv == ("serve", "--otlp", filled)


EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "own-service"
BASCULE_RUN = [sys.executable, "-m", "bascule", "run"]


@pytest.mark.slow
def test_the_worked_example_runs_end_to_end_as_the_readme_says(tmp_path: Path) -> None:
    # README: bascule run examples/own-service/scenario.yaml
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "bascule",
            "run",
            str(EXAMPLE / "scenario.yaml"),
            "--out",
            str(tmp_path),
            "--quiet",
        ],
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    result = json.loads((tmp_path / "result.json").read_text())
    figures = result["figures"]
    # The kv blackhole in fr-par sent clients to gra: some answers were served there.
    served = [r for r in read_journal(tmp_path / "journal.jsonl") if r["type"] == "window"]
    regions = {region for w in served for by_class in w.get("regions", {}).values() for region in by_class}
    assert {"scaleway/fr-par", "ovhcloud/gra"} <= regions
    assert figures["rpo"]["acknowledged"] > 0 and figures["rpo"]["lost"] == 0
    assert result["score"]["passed"] is True


@pytest.mark.slow
@pytest.mark.skipif(
    resolver_problem() is not None and not os.environ.get("BASCULE_REQUIRE_DNS_CLIENTS"),
    reason=str(resolver_problem()),
)
def test_the_worked_example_by_name_fails_over_under_a_dns_fault(tmp_path: Path) -> None:
    # README: bascule run examples/own-service/scenario-dns.yaml (the api given its kv by name)
    done = subprocess.run(
        [*BASCULE_RUN, str(EXAMPLE / "scenario-dns.yaml"), "--out", str(tmp_path), "--quiet"],
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    journal = list(read_journal(tmp_path / "journal.jsonl"))
    (applied,) = [r["t"] for r in journal if r["type"] == "fault-applied"]
    (reverted,) = [r["t"] for r in journal if r["type"] == "fault-reverted"]
    windows = [r for r in journal if r["type"] == "window" and r["requests"]]

    def served(first: float, last: float) -> set[str]:
        return {
            region
            for w in windows
            if w["start"] >= first and w["start"] + w["length"] <= last
            for by_class in w["regions"].values()
            for region in by_class
        }

    # Each kv request of the fr-par api looks the name up: NODATA, so it answers 503 and the edge
    # sends everyone to gra (its breaker opens within a second; 3 s of margin on a busy machine).
    assert served(0.0, applied) == {"scaleway/fr-par"}
    assert served(applied + 3.0, reverted) == {"ovhcloud/gra"}
    result = json.loads((tmp_path / "result.json").read_text())
    assert result["score"]["passed"] is True


def test_a_run_on_a_service_of_ones_own_refuses_the_reference_load_and_no_probe(tmp_path: Path) -> None:
    """The reference gateway's requests would go to the user's service (404s blamed on the
    phases), and no default probe can check it: both are refused before anything starts."""
    from bascule.runner.inputs import load_inputs
    from bascule.targets.registry import choose

    text = (EXAMPLE / "scenario.yaml").read_text()
    scenario = yaml.safe_load(text)
    design = str((EXAMPLE / "design.yaml").resolve())

    def inputs(changed: dict[str, object]) -> None:
        path = tmp_path / "scenario.yaml"
        path.write_text(yaml.safe_dump({**scenario, "design": design, **changed}))
        load_inputs(RunOptions(path, choose("local")))

    inputs({})  # as the example is: requests given, probes given
    unshaped = {key: value for key, value in scenario["load"].items() if key != "requests"}
    with pytest.raises(ScenarioError, match=r"load\.requests .* /v1/ask and /v1/documents would go to it"):
        inputs({"load": unshaped})
    inputs({"load": {**unshaped, "requests": {"ask_path": "/v1/ask"}}})  # the reference shapes, on purpose
    with pytest.raises(ScenarioError, match="no default probe"):
        inputs({"steady_state": None})
    # A rag probe with no url would ask the reference gateway's POST /v1/ask of it (a new user's
    # replay passed validate, then stopped at the steady state on 404s); with its url, it runs.
    reference = {**scenario["steady_state"], "probes": [{"kind": "rag", "data_class": "internal"}]}
    with pytest.raises(ScenarioError, match=r"this rag probe has no url, .* POST /v1/ask") as refused:
        inputs({"steady_state": reference})
    assert refused.value.problems[0].path == ("steady_state", "probes", 0)
    fresh = {**reference, "probes": [{"kind": "freshness", "write_url": "/api/notes"}]}
    with pytest.raises(ScenarioError, match="this freshness probe has no ask_url"):
        inputs({"steady_state": fresh})
    inputs({"steady_state": {**reference, "probes": [{"kind": "rag", "url": "/api/ask"}]}})
