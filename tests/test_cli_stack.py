"""`bascule stack up` and `bascule stack ask` as a user runs them: real processes, real exit codes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from bascule.stack.supervisor import pid_is

ROOT = Path(__file__).resolve().parent.parent
CLI = [sys.executable, "-c", "from bascule.cli import main; main()"]


def _cli(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "COLUMNS": "200"}
    return subprocess.run(
        [*CLI, *args], check=False, capture_output=True, text=True, timeout=timeout, cwd=ROOT, env=env
    )


def test_stack_up_serves_asks_and_leaves_nothing_behind(tmp_path: Path) -> None:
    run_dir = tmp_path / "stack"
    env = {**os.environ, "COLUMNS": "200"}
    up = subprocess.Popen(
        [*CLI, "stack", "up", "--run-dir", str(run_dir), "--for", "120"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline = time.monotonic() + 60
        while not (run_dir / "stack.json").exists():
            assert up.poll() is None, up.stdout.read() if up.stdout else ""
            assert time.monotonic() < deadline, "the stack did not come up"
            time.sleep(0.1)
        state = json.loads((run_dir / "stack.json").read_text())
        processes = [(p["pid"], p["start_time"]) for p in state["processes"]]
        assert len(processes) == 11

        internal = _cli(
            "stack", "ask", "What pretension is applied to a mooring line?", "--run-dir", str(run_dir)
        )
        assert internal.returncode == 0, internal.stderr
        assert "4 kN" in internal.stdout and "[doc:MOOR-002]" in internal.stdout
        assert "entry aws/us-east-1" in internal.stdout
        secret = _cli(
            "stack",
            "ask",
            "What is the weekly on-call allowance?",
            "-c",
            "confidential",
            "--run-dir",
            str(run_dir),
        )
        assert secret.returncode == 0 and "230 EUR" in secret.stdout
        assert "foreign" not in secret.stdout and "entry scaleway/fr-par" in secret.stdout
        bad = _cli("stack", "ask", "x", "-c", "secret", "--run-dir", str(run_dir))
        assert bad.returncode == 2 and "unknown data class" in bad.stderr
    finally:
        up.send_signal(signal.SIGINT)
        output, _ = up.communicate(timeout=30)
    assert up.returncode == 0, output
    assert "all ready in" in output and "stopped" in output
    assert not any(pid_is(pid, start) for pid, start in processes)
    assert not (run_dir / "stack.json").exists()


def test_stack_ask_without_a_running_stack_exits_4(tmp_path: Path) -> None:
    result = _cli("stack", "ask", "anything", "--run-dir", str(tmp_path))
    assert result.returncode == 4 and "no running stack" in result.stderr


@pytest.mark.parametrize("verb", ["up", "ask"])
def test_stack_verbs_have_help_with_an_example(verb: str) -> None:
    result = _cli("stack", verb, "--help")
    assert result.returncode == 0 and "Example" in result.stdout


def test_stack_ask_on_services_of_ones_own_says_what_to_do_instead(tmp_path: Path) -> None:
    """A new user's `stack ask` on their own services posted /v1/ask and printed 'HTTP 501'."""
    from typer.testing import CliRunner

    from bascule.cli import app

    root = Path(__file__).resolve().parent.parent
    state = {"design_path": str(root / "examples" / "own-service" / "design.yaml"), "entries": {}}
    state["entries"] = {"scaleway/fr-par": "http://127.0.0.1:9"}
    (tmp_path / "stack.json").write_text(json.dumps(state))
    result = CliRunner().invoke(app, ["stack", "ask", "hello", "--run-dir", str(tmp_path)])
    assert result.exit_code == 2
    assert "reference stack's question API" in result.output and "http://127.0.0.1:9" in result.output
