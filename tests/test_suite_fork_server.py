"""One fork server for all the runs of a command (`bascule.targets.local.shared`): a suite of two
short real runs forks both runs' services from one server, which is gone when the suite ends;
`bascule recover` stops it after the suite is killed by SIGKILL; a server that died is not lent
again (the next run starts its own). Real processes: slow, except the checks that start nothing."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from local_helpers import write_small_design

from bascule.model.loading import read_design
from bascule.stack.spawn import FORK_SERVER_ENV, fork_refusal
from bascule.targets.local.ledger import LEDGER_FILE, ProcessRecord, read_ledger
from bascule.targets.local.procfs import process_alive
from bascule.targets.local.recover import recover
from bascule.targets.local.shared import (
    SHARED_LEDGER_DESIGN,
    lent_fork_server,
    needs_fork_server,
    shared_fork_server,
)
from bascule.targets.local.stack import LocalStack

ROOT = Path(__file__).resolve().parent.parent
SAMPLES = ROOT / "tests" / "samples"
APS = ROOT / "designs" / "active-passive-sovereign.yaml"
CLI = [sys.executable, "-c", "from bascule.cli import main; main()"]

needs_fork = pytest.mark.skipif(fork_refusal() is not None, reason=str(fork_refusal()))


def _wait(check: Callable[[], bool], timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.1)


def _two_scenarios(folder: Path) -> Path:
    """ci-pass twice, under two ids: two short runs (~13 s each)."""
    folder.mkdir()
    text = (SAMPLES / "ci-pass.yaml").read_text().replace("../../designs/", f"{ROOT}/designs/")
    for ident in ("ci-pass", "ci-pass-again"):
        (folder / f"{ident}.yaml").write_text(text.replace("id: ci-pass", f"id: {ident}"))
    return folder


def _fork_servers(ledger: Path) -> list[ProcessRecord]:
    return [p for p in read_ledger(ledger).processes if p.name == "fork-server"]


def test_nothing_is_shared_when_fork_is_off(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(FORK_SERVER_ENV, "0")
    with shared_fork_server(tmp_path) as pid:
        assert pid is None and lent_fork_server() is None
    assert not (tmp_path / LEDGER_FILE).exists()


def test_nothing_is_shared_for_designs_of_only_own_services(tmp_path: Path) -> None:
    # Own services always start cold (docs/local-target.md): a suite of them started a fork server
    # all the same (trial 11).
    own = ROOT / "examples" / "own-postgres" / "design.yaml"
    assert not needs_fork_server([own])
    assert needs_fork_server([own, APS]) and needs_fork_server([tmp_path / "missing.yaml"])
    with shared_fork_server(tmp_path, needed=needs_fork_server([own])) as pid:
        assert pid is None and lent_fork_server() is None
    assert not (tmp_path / LEDGER_FILE).exists()


@pytest.mark.slow
@needs_fork
def test_a_suite_of_two_runs_forks_both_from_one_server_gone_at_the_end(tmp_path: Path) -> None:
    out = tmp_path / "out"
    proc = subprocess.run(
        [*CLI, "suite", str(_two_scenarios(tmp_path / "in")), "--design", str(APS), "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    (shared,) = _fork_servers(out / LEDGER_FILE)
    assert f"fork server pid {shared.pid}, shared by the runs" in proc.stdout
    for slug in ("ci-pass--active-passive-sovereign", "ci-pass-again--active-passive-sovereign"):
        run_ledger = read_ledger(out / slug / LEDGER_FILE)
        assert run_ledger.closed
        # Only the shared server: the run started none of its own.
        assert [(p.pid, p.start_time) for p in _fork_servers(out / slug / LEDGER_FILE)] == [
            (shared.pid, shared.start_time)
        ]
        assert len(run_ledger.processes) > 1
    suite_ledger = read_ledger(out / LEDGER_FILE)
    assert suite_ledger.closed and suite_ledger.run is not None
    assert suite_ledger.run.design == SHARED_LEDGER_DESIGN
    assert not process_alive(shared.pid, shared.start_time)


@pytest.mark.slow
@needs_fork
def test_recover_after_sigkill_of_the_suite_stops_its_fork_server(tmp_path: Path) -> None:
    out = tmp_path / "runs" / "suite"
    suite = subprocess.Popen(
        [*CLI, "suite", str(_two_scenarios(tmp_path / "in")), "--design", str(APS), "--out", str(out)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    first = out / "ci-pass--active-passive-sovereign"
    try:
        _wait(lambda: (out / LEDGER_FILE).exists() and bool(_fork_servers(out / LEDGER_FILE)))
        (shared,) = _fork_servers(out / LEDGER_FILE)
        # The first run is over: the server lives on, between runs, for the second.
        _wait(lambda: (first / LEDGER_FILE).exists() and read_ledger(first / LEDGER_FILE).closed)
        assert process_alive(shared.pid, shared.start_time)
        # Stopped, it cannot end itself at the end of its channel: only recover can stop it.
        os.kill(shared.pid, signal.SIGSTOP)
        os.kill(suite.pid, signal.SIGKILL)
        suite.wait(10)
    finally:
        if suite.poll() is None:
            os.kill(suite.pid, signal.SIGKILL)
            suite.wait(10)
    recovered = subprocess.run(
        [*CLI, "recover"], cwd=tmp_path, capture_output=True, text=True, timeout=120, check=False
    )
    try:
        assert "fork-server" in recovered.stdout, recovered.stdout + recovered.stderr
        assert not process_alive(shared.pid, shared.start_time)
        assert read_ledger(out / LEDGER_FILE).recovered
    finally:
        # The second run's own processes, if it had started (its ledger is one level further down).
        for ledger in sorted(out.glob(f"*/{LEDGER_FILE}")):
            if not read_ledger(ledger).finished:
                recover(ledger.parent)
        if process_alive(shared.pid, shared.start_time):
            os.kill(shared.pid, signal.SIGKILL)


@pytest.mark.slow
@needs_fork
def test_a_dead_shared_server_is_not_lent_again_the_next_run_starts_its_own(tmp_path: Path) -> None:
    path = write_small_design(tmp_path)
    design = read_design(path)
    with shared_fork_server(tmp_path / "command") as pid:
        assert pid is not None
        lent = lent_fork_server()
        assert lent is not None and lent.pid == pid
        with shared_fork_server(tmp_path / "inner") as inner:
            assert inner is None and lent_fork_server() is lent  # a nested command lends the same one
        stack = LocalStack.start(design, path, tmp_path / "run-1", timeout=60)
        try:
            assert [p.pid for p in _fork_servers(stack.ledger.path)] == [pid]
            for replica in stack.supervisor.replicas():
                stat = Path(f"/proc/{replica.pid}/stat").read_text()
                assert int(stat[stat.rindex(")") + 2 :].split()[1]) == pid, replica.spec.name
        finally:
            stack.stop()
        assert lent.alive, "a run's end does not stop the command's server"
        os.kill(pid, signal.SIGKILL)
        _wait(lambda: not lent.alive, 10)
        assert lent_fork_server() is None
        stack = LocalStack.start(design, path, tmp_path / "run-2", timeout=60)
        try:
            (own,) = _fork_servers(stack.ledger.path)
            assert own.pid != pid and process_alive(own.pid, own.start_time)
        finally:
            stack.stop()
        assert not process_alive(own.pid, own.start_time), "the run's own server ends with it"
    assert read_ledger(tmp_path / "command" / LEDGER_FILE).closed
    assert not (tmp_path / "inner" / LEDGER_FILE).exists()
