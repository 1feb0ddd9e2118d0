"""Paths on a whole run, through the fake target (tests/fake_target.py): every sample gets the hops
the target saw for its trace, every hop is some request's, and sovereignty is judged over them."""

from __future__ import annotations

import socket
from pathlib import Path
from urllib.parse import urlsplit

from rich.console import Console
from test_run_logic import LATENCY, PAR, fake, fake_registered, files, records, scenario

from bascule.ci.results import run_scored
from bascule.exit_codes import ExitCode
from bascule.journal import read_journal
from bascule.runner.run import RunOptions

__all__ = ["fake_registered"]  # its autouse fixture registers the fake target here too


def test_every_probe_sample_gets_the_hops_the_target_saw_for_its_trace(tmp_path: Path) -> None:
    """Paths come from the target, tied to each request by its trace id; sovereignty is then judged
    over those requests, and a target that sees no path would leave it unmeasured."""
    starter = fake()
    options = RunOptions(files(tmp_path, scenario(LATENCY)), starter, out=tmp_path / "run", quiet=True)
    outcome = run_scored(options, console=Console(quiet=True), charts=False)
    assert outcome.exit_code == ExitCode.OK, outcome.reason
    samples = records(outcome, "sample")
    assert samples and all(s["trace_id"] for s in samples)
    for s in samples:
        assert [(h["component"], h["region"], h["via"]) for h in s["hops"]] == [("notes", PAR, "fault-plane")]
    (paths,) = records(outcome, "paths-report")
    # Every hop is some request's: the continuous probes' and the steady-state checks' (judged apart).
    assert paths["claimed"] == paths["hops"] > len(samples) and paths["unclaimed"] == {}
    assert paths["incomplete_routes"] == []
    (report,) = records(outcome, "sovereignty-report")
    assert report["judged"] > 0 and report["unattributed"] == 0


def receiver_closed(run_dir: Path) -> bool:
    (receiver,) = [r for r in read_journal(run_dir) if r["type"] == "traces-receiver"]
    port = urlsplit(receiver["endpoint"]).port
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1.0).close()
    except OSError:
        return True
    return False


def test_with_otlp_the_services_spans_are_a_second_source_judged_beside_the_fault_plane(
    tmp_path: Path,
) -> None:
    """The fake service exports a server span per request to the run's receiver (as an instrumented
    service does): each request's spans are claimed by its trace id, journaled, and both sources are
    judged alone; a place both told is one hop."""
    starter = fake()
    options = RunOptions(
        files(tmp_path, scenario(LATENCY)), starter, out=tmp_path / "run", quiet=True, otlp=True
    )
    outcome = run_scored(options, console=Console(quiet=True), charts=False)
    assert outcome.exit_code == ExitCode.OK, outcome.reason
    (endpoint,) = starter.otlp_endpoints
    assert endpoint is not None and endpoint.startswith("http://127.0.0.1:")
    samples = records(outcome, "sample")
    assert samples and all(len(s["hops"]) == 1 for s in samples)  # the same place, once
    spans = records(outcome, "span")
    (received,) = records(outcome, "traces-received")
    assert len(spans) == received["spans"] > len(samples) and received["unattributed"] == 0
    assert {(s["region"], s["attributed_by"]) for s in spans} == {(PAR, "cloud.region")}
    (paths,) = records(outcome, "paths-report")
    sources = paths["sources"]
    fault_plane, otlp = sources["sources"]["fault-plane"], sources["sources"]["otlp"]
    assert otlp["requests"] == fault_plane["requests"] == sources["both"] == sources["same_region"] > 0
    assert paths["spans"]["unclaimed"] == 0 and paths["spans"]["claimed"] == len(spans)
    assert receiver_closed(outcome.run_dir)
    summary = (outcome.run_dir / "summary.md").read_text(encoding="utf-8")
    assert f"fault plane 0 of {fault_plane['requests']} · OTLP 0 of {otlp['requests']}" in summary


def test_with_otlp_the_receiver_is_stopped_when_the_target_fails_to_start(tmp_path: Path) -> None:
    starter = fake("start")
    options = RunOptions(
        files(tmp_path, scenario(LATENCY)), starter, out=tmp_path / "run", quiet=True, otlp=True
    )
    outcome = run_scored(options, console=Console(quiet=True), charts=False)
    assert outcome.exit_code == ExitCode.TARGET_ERROR
    assert records(outcome, "traces-received") and receiver_closed(outcome.run_dir)
