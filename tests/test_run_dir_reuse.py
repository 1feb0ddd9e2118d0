"""Refused before anything starts, in one line: a run directory that already holds a run (exit 2) —
a new run there appended to its journal, and its result counted both runs' requests: a new user's
suite read PASS 100/A on a region outage that failed availability each time it ran alone — and a
--metrics-port already in use (exit 4, where it was a traceback and exit 1)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from run_cli import run_bascule

from bascule.errors import RunDirectoryInUseError
from bascule.exit_codes import ExitCode
from bascule.rundir import prepare_run_directory, refuse_used

ROOT = Path(__file__).resolve().parent.parent
SCENARIO = ROOT / "scenarios" / "faults" / "latency.yaml"
DESIGN = ROOT / "designs" / "active-passive-sovereign.yaml"
EARLIER = '{"type": "run-started", "t": 0.0}\n'


def test_a_directory_holding_a_journal_is_refused_and_left_as_it_was(tmp_path: Path) -> None:
    prepare_run_directory(tmp_path / "new", fresh=True)  # empty, or absent: fine
    (tmp_path / "old").mkdir()
    (tmp_path / "old" / "journal.jsonl").write_text(EARLIER)
    with pytest.raises(RunDirectoryInUseError, match="already holds a run"):
        prepare_run_directory(tmp_path / "old", fresh=True)
    prepare_run_directory(tmp_path / "old")  # what re-renders reports may still use it
    assert (tmp_path / "old" / "journal.jsonl").read_text() == EARLIER


def test_a_suite_directory_with_runs_below_it_is_refused(tmp_path: Path) -> None:
    refuse_used(tmp_path, within=True)
    (tmp_path / "s1--a" / "run-2").mkdir(parents=True)
    (tmp_path / "s1--a" / "run-2" / "journal.jsonl").write_text(EARLIER)
    refuse_used(tmp_path)  # not in the directory itself
    with pytest.raises(RunDirectoryInUseError, match=r"s1--a/run-2/journal\.jsonl"):
        refuse_used(tmp_path, within=True)


def test_run_and_suite_exit_2_on_a_used_directory_before_starting_anything(tmp_path: Path) -> None:
    used = tmp_path / "run"
    used.mkdir()
    (used / "journal.jsonl").write_text(EARLIER)
    done = run_bascule(SCENARIO, used, timeout=60)
    assert done.returncode == ExitCode.INVALID_INPUT, done.stderr
    assert "already holds a run" in done.stderr and "give another --out" in done.stderr
    assert (used / "journal.jsonl").read_text() == EARLIER

    suite = tmp_path / "suite"
    (suite / "latency--active-passive-sovereign").mkdir(parents=True)
    (suite / "latency--active-passive-sovereign" / "journal.jsonl").write_text(EARLIER)
    command = [sys.executable, "-c", "from bascule.cli import main; main()", "suite", str(SCENARIO)]
    done = subprocess.run(
        [*command, "--design", str(DESIGN), "--out", str(suite)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == ExitCode.INVALID_INPUT, done.stderr
    assert "already holds a run" in done.stderr


def test_a_metrics_port_in_use_is_one_line_and_exit_4_not_a_traceback() -> None:
    import socket

    from bascule.errors import TargetError
    from bascule.runner.metrics_endpoint import MetricsEndpoint

    with socket.create_server(("127.0.0.1", 0)) as held:
        port = held.getsockname()[1]
        with pytest.raises(TargetError, match=f"--metrics-port {port}: cannot listen"):
            MetricsEndpoint(port, "s", "d")
