"""`bascule run` end to end, with real processes: the journal, guardrails, signals, probe timing,
sovereignty violations, and nothing left behind. Each test starts a stack (~5 s) and runs a short
scenario, so they are marked slow; CI runs them in its second pass."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console

from bascule.ci.results import run_scored
from bascule.journal import read_journal
from bascule.runner.run import RunOptions
from bascule.stack.supervisor import pid_is
from bascule.targets.registry import choose

ROOT = Path(__file__).resolve().parent.parent
SAMPLES = ROOT / "tests" / "samples"
CLI = [sys.executable, "-c", "from bascule.cli import main; main()"]

pytestmark = pytest.mark.slow


def records(run_dir: Path, kind: str | None = None) -> list[dict[str, Any]]:
    return [r for r in read_journal(run_dir) if kind is None or r["type"] == kind]


def listening_ports() -> set[int]:
    ports: set[int] = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with open(table) as f:
            for line in f.readlines()[1:]:
                fields = line.split()
                if fields[3] == "0A":
                    ports.add(int(fields[1].rsplit(":", 1)[1], 16))
    return ports


def assert_nothing_left(run_dir: Path) -> None:
    (started,) = records(run_dir, "target-started")
    alive = [p["name"] for p in started["processes"] if pid_is(p["pid"], p["start_time"])]
    assert alive == []
    for load in records(run_dir, "load-started"):
        assert not [pid for pid, start in load["pids"] if start is not None and pid_is(pid, start)]
    ours = set(started["route_ports"].values())
    assert not ours & listening_ports()
    applied = {(r["phase"], r["cycle"]) for r in records(run_dir, "fault-applied")}
    reverted = {(r["phase"], r["cycle"]) for r in records(run_dir, "fault-reverted") if "phase" in r}
    rolled_back = [r for r in records(run_dir, "fault-reverted") if r.get("rollback")]
    assert len(applied - reverted) == len(rolled_back)


def run(name: str, tmp_path: Path, **options: Any) -> tuple[int, Path]:
    out = tmp_path / name
    with open(os.devnull, "w") as sink:
        outcome = run_scored(
            RunOptions(
                scenario=SAMPLES / f"{name}.yaml", target=choose("local"), out=out, quiet=True, **options
            ),
            console=Console(file=sink),
        )
    return outcome.exit_code, out


def regions_of(windows: Iterable[dict[str, Any]], data_class: str) -> dict[str, int]:
    total: dict[str, int] = {}
    for w in windows:
        for region, n in w["regions"].get(data_class, {}).items():
            total[region] = total.get(region, 0) + n
    return total


def test_readme_command_runs_the_aws_replay(tmp_path: Path) -> None:
    out = tmp_path / "aws"
    began = time.monotonic()
    proc = subprocess.run(
        [*CLI, "run", "scenarios/incidents/aws-us-east-1-2025-10-20.yaml", "--quiet", "--out", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    wall = time.monotonic() - began
    print(f"\nAWS 2025-10-20 replay, 60 s plan: {wall:.1f} s wall, exit {proc.returncode}")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert wall < 120
    assert f"journal: {out / 'journal.jsonl'}" in proc.stdout.replace("\n", "")
    assert_nothing_left(out)
    plan_start = records(out, "plan-started")[0]["t"]
    applied = records(out, "fault-applied")
    assert {r["phase"] for r in applied} == set(range(6))
    assert all(abs(r["actual"] - r["planned"]) < 0.5 for r in applied)
    windows = records(out, "window")
    before = [w for w in windows if w["start"] < plan_start]
    second_sts = [w for w in windows if plan_start + 32 <= w["start"] < plan_start + 42]
    after = [w for w in windows if w["start"] >= plan_start + 62]
    assert max(regions_of(before, "internal"), key=regions_of(before, "internal").get) == "aws/us-east-1"
    assert regions_of(second_sts, "internal").get("scaleway/fr-par", 0) > 0
    assert max(regions_of(after, "internal"), key=regions_of(after, "internal").get) == "aws/us-east-1"
    assert set(regions_of(windows, "confidential")) == {"scaleway/fr-par"}
    assert records(out, "sovereignty-violation") == []
    (report,) = records(out, "sovereignty-report")
    assert report["judged"] > 1000 and report["violations"] == []


def test_us_fallback_records_each_violation_with_request_and_hop(tmp_path: Path) -> None:
    code, out = run("run-us-fallback", tmp_path)
    assert code == 1  # completed, but objectives not met: the violations fail sovereignty
    (scored,) = records(out, "score")
    assert "sovereignty" in scored["failing"] and scored["cap"]["at"] == 50 and scored["overall"] <= 50
    (ended,) = records(out, "run-ended")
    assert ended["reason"].startswith("objectives not met") and "sovereignty" in ended["reason"]
    assert (out / "report.html").exists() and (out / "result.json").exists()
    violations = records(out, "sovereignty-violation")
    assert violations
    first = violations[0]
    assert first["data_class"] == "confidential" and first["minimum"] == "sovereign"
    assert first["hop"]["region"].startswith("aws/") and first["level"] == "foreign"
    assert first["request_id"]
    assert_nothing_left(out)


def test_a_tripped_guardrail_aborts_within_a_second_with_exit_3(tmp_path: Path) -> None:
    code, out = run("run-guardrail", tmp_path)
    assert code == 3
    (trip,) = records(out, "guardrail-tripped")
    rollback = [r for r in records(out, "fault-reverted") if r.get("rollback")]
    assert rollback and rollback[-1]["t"] - trip["t"] < 1.0
    (ended,) = records(out, "run-ended")
    assert ended["exit_code"] == 3 and "guardrail" in ended["reason"]
    assert_nothing_left(out)


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_mid_fault_reverts_and_stops_within_two_seconds(tmp_path: Path, sig: signal.Signals) -> None:
    out = tmp_path / sig.name
    proc = subprocess.Popen(
        [*CLI, "run", str(SAMPLES / "run-long.yaml"), "--quiet", "--out", str(out)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline = time.monotonic() + 60
        while not (out / "journal.jsonl").exists() or not records(out, "fault-applied"):
            assert proc.poll() is None and time.monotonic() < deadline
            time.sleep(0.1)
        time.sleep(1.0)
        sent = time.monotonic()
        proc.send_signal(sig)
        proc.wait(timeout=30)
        took = time.monotonic() - sent
    finally:
        if proc.poll() is None:
            proc.kill()
    print(f"\n{sig.name}: reverted and stopped in {took:.2f} s")
    assert proc.returncode == 3
    assert took < 2.0
    (ended,) = records(out, "run-ended")
    assert sig.name in ended["reason"]
    assert_nothing_left(out)


def test_probes_see_an_outage_within_two_periods_of_its_instants(tmp_path: Path) -> None:
    code, out = run("run-probe-timing", tmp_path)  # probe samples are journaled without --raw-samples
    assert code == 1  # 4 s with no sovereign entry point: confidential asks fail, availability is missed
    (applied,) = records(out, "fault-applied")
    (reverted,) = [r for r in records(out, "fault-reverted") if "phase" in r]
    samples = [r for r in records(out, "sample") if r["source"].startswith("rag")]
    period = 0.1
    apply_at, revert_at = applied["t"], reverted["t"]
    first_failed = min(s["t"] for s in samples if not s["ok"] and s["t"] >= apply_at - 2 * period)
    recovered = min(s["t"] for s in samples if s["ok"] and s["t"] >= revert_at - 2 * period)
    print(
        f"\nfirst failed sample {first_failed - apply_at:+.3f} s after apply, "
        f"first good one {recovered - revert_at:+.3f} s after revert"
    )
    assert abs(first_failed - apply_at) <= 2 * period
    assert abs(recovered - revert_at) <= 2 * period
    assert_nothing_left(out)


def test_metrics_port_serves_the_live_figures(tmp_path: Path) -> None:
    import socket
    import threading

    import httpx

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    scraped: list[str] = []

    def scrape() -> None:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not any("bascule_success_ratio{" in s for s in scraped):
            with contextlib.suppress(httpx.HTTPError):
                scraped.append(httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=1).text)
            time.sleep(0.5)

    thread = threading.Thread(target=scrape, daemon=True)
    thread.start()
    code, _out = run("run-us-fallback", tmp_path, metrics_port=port)
    thread.join(5)
    assert code == 1  # sovereignty violations (see above)
    text = next(s for s in scraped if "bascule_success_ratio{" in s)
    assert 'scenario="test-us-fallback"' in text and "bascule_served_requests_total" in text
    assert port not in listening_ports()
