"""`bascule inject` and `bascule recover` from the command line: argument parsing, and one game day
driven by hand against a real `bascule stack up`."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from local_helpers import write_small_design
from typer.testing import CliRunner

from bascule.cli import app
from bascule.cli.gameday import parse_fault_argument, parse_target_argument
from bascule.faults import Crash, Flap, HttpError, Latency, Refuse
from bascule.model.selector import Selector
from bascule.targets.local.ledger import LEDGER_FILE, read_ledger

BASCULE = [sys.executable, "-c", "from bascule.cli import main; main()"]


def test_fault_arguments_are_read_as_yaml_values() -> None:
    assert parse_fault_argument("latency", ["fixed=200ms", "jitter=50ms"]) == Latency(fixed=0.2, jitter=0.05)
    assert parse_fault_argument("http-error", ["statuses=[502, 503]", "ratio=0.5"]) == HttpError(
        statuses=(502, 503), ratio=0.5
    )
    flap = parse_fault_argument("flap", ["fault={kind: refuse}", "period=4s", "duty=0.25"])
    assert isinstance(flap, Flap) and flap.fault == Refuse() and flap.period == 4.0
    assert parse_fault_argument("crash", ["restart-after=2s"]) == Crash(restart_after=2.0)


@pytest.mark.parametrize(
    ("kind", "params", "message"),
    [
        ("latncy", [], "unknown fault kind 'latncy'"),
        ("latency", ["fixed"], "NAME=VALUE"),
        ("latency", ["fixed=soon"], "fixed"),
        ("crash", ["speed=3"], "speed"),
    ],
)
def test_bad_fault_arguments_say_what_is_wrong(kind: str, params: list[str], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_fault_argument(kind, params)


def test_target_arguments() -> None:
    assert parse_target_argument("component=store,region=aws/us-east-1") == Selector(
        component="store", region="aws/us-east-1"
    )
    assert parse_target_argument("{link: [aws/us-east-1, scaleway/fr-par]}") == Selector(
        link=("aws/us-east-1", "scaleway/fr-par")
    )
    assert parse_target_argument("component=retriever,region=aws/us-east-1,replica=0").replica == 0
    with pytest.raises(ValueError, match="provider"):
        parse_target_argument("provider=aws,region=aws/us-east-1")
    with pytest.raises(ValueError, match="NAME=VALUE"):
        parse_target_argument("store")


def test_inject_refuses_bad_input_with_exit_2(tmp_path: Path) -> None:
    runner = CliRunner()
    result = runner.invoke(app, ["inject", "latency", "fixed=soon", "--target", "component=store"])
    assert result.exit_code == 2, result.output
    result = runner.invoke(app, ["inject", "crash"])
    assert result.exit_code == 2 and "--target is required" in result.output
    result = runner.invoke(app, ["inject", "crash", "-t", "component=store", "--run-dir", str(tmp_path)])
    assert result.exit_code == 4, result.output  # no stack runs there


def test_recover_without_unfinished_runs_says_so(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    # No runs/ here at all: a shell in the wrong directory (trial 11) is warned it looked at nothing.
    result = CliRunner().invoke(app, ["recover"])
    assert result.exit_code == 0
    assert f"no runs/ directory in {tmp_path}: nothing was looked at" in result.output
    (tmp_path / "runs").mkdir()
    result = CliRunner().invoke(app, ["recover"])
    assert result.exit_code == 0 and "no unfinished run under runs/: nothing to recover" in result.output
    # A run killed before its directory existed, or before its ledger did, started nothing.
    result = CliRunner().invoke(app, ["recover", str(tmp_path / "nowhere")])
    assert result.exit_code == 0, result.output
    assert "nowhere does not exist: the run started nothing there, nothing to recover" in result.output
    (tmp_path / "empty").mkdir()
    result = CliRunner().invoke(app, ["recover", str(tmp_path / "empty")])
    assert result.exit_code == 0 and "empty holds no undo ledger" in result.output


@pytest.mark.parametrize("verb", ["run", "suite", "compare", "stack up"])
def test_a_run_directory_in_the_way_is_one_clear_error_with_exit_4(tmp_path: Path, verb: str) -> None:
    root = Path(__file__).resolve().parent.parent
    scenario = root / "tests" / "samples" / "run-long.yaml"
    design = root / "designs" / "active-passive-sovereign.yaml"
    blocker = tmp_path / "blocker"
    blocker.write_text("a file, not a directory")
    out = blocker / "run"
    args = {
        "run": ["run", str(scenario), "--out", str(out)],
        "suite": ["suite", str(scenario), "--out", str(out)],
        "compare": ["compare", "-d", str(design), "-s", str(scenario), "--out", str(out)],
        "stack up": ["stack", "up", "-d", str(design), "--run-dir", str(out)],
    }[verb]
    done = subprocess.run(
        [*BASCULE, *args], capture_output=True, text=True, timeout=60, cwd=tmp_path, check=False
    )
    assert done.returncode == 4, done.stdout + done.stderr
    assert "Traceback" not in done.stderr
    assert f"cannot use {out} as a run directory: a part of its path is a file" in done.stderr
    assert blocker.read_text() == "a file, not a directory"


def _bascule(*args: str, **kwargs: object) -> subprocess.Popen[str]:
    return subprocess.Popen(  # type: ignore[call-overload, no-any-return]
        [*BASCULE, *args], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, **kwargs
    )


def _wait_ready(run_dir: Path, stack: subprocess.Popen[str], timeout: float = 60.0) -> dict[str, object]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert stack.poll() is None, stack.communicate()[0]
        state_file = run_dir / "stack.json"
        if state_file.exists():
            state = json.loads(state_file.read_text())
            if state.get("control"):
                return dict(state)
        time.sleep(0.2)
    raise AssertionError("the stack did not come up")


@pytest.mark.slow
def test_a_game_day_by_hand(tmp_path: Path) -> None:
    """stack up; inject a fault for 2 s and watch it bite; inject one more, kill the injector
    outright, recover: the stack is whole again."""
    design = write_small_design(tmp_path)
    run_dir = tmp_path / "stack"
    stack = _bascule("stack", "up", "--design", str(design), "--run-dir", str(run_dir), "--for", "120")
    injectors: list[subprocess.Popen[str]] = []
    try:
        state = _wait_ready(run_dir, stack)
        routes = state["routes"]
        assert isinstance(routes, dict)
        route = next(v for k, v in routes.items() if k.startswith("gateway@") and "->llm@" in k)
        url = f"http://127.0.0.1:{route}/healthz"
        assert httpx.get(url, trust_env=False).status_code == 200

        held = _bascule(
            "inject",
            "http-error",
            "statuses=[503]",
            "-t",
            "component=llm",
            "--for",
            "2s",
            "--run-dir",
            str(run_dir),
        )
        injectors.append(held)
        _wait_status(url, 503, timeout=15)  # the injector starts, connects, applies
        output, _ = held.communicate(timeout=30)
        assert held.returncode == 0, output
        assert "applied" in output and "reverted" in output, output
        assert httpx.get(url, trust_env=False).status_code == 200

        killed = _bascule("inject", "http-error", "-t", "component=llm", "--run-dir", str(run_dir))
        injectors.append(killed)
        _wait_status(url, 503, timeout=30)
        killed.send_signal(signal.SIGKILL)
        killed.wait(10)
        assert httpx.get(url, trust_env=False).status_code >= 500, "the stack kept the fault"
        recovered = subprocess.run(
            [*BASCULE, "recover", str(run_dir)], capture_output=True, text=True, timeout=60, check=False
        )
        assert recovered.returncode == 0, recovered.stdout + recovered.stderr
        assert "reverted" in recovered.stdout
        assert httpx.get(url, trust_env=False).status_code == 200
        assert read_ledger(run_dir / LEDGER_FILE).active == ()
    finally:
        for injector in injectors:  # a test that failed half-way leaves no injector behind
            if injector.poll() is None:
                injector.kill()
                injector.wait(10)
        if stack.poll() is None:
            stack.send_signal(signal.SIGTERM)
        output, _ = stack.communicate(timeout=60)
    assert "stopped" in output, output
    assert not [p for p in read_ledger(run_dir / LEDGER_FILE).processes if _alive(p.pid)]


def _wait_status(url: str, status: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while (seen := httpx.get(url, trust_env=False).status_code) != status:
        assert time.monotonic() < deadline, f"still {seen} after {timeout:g} s"
        time.sleep(0.05)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return Path(f"/proc/{pid}/stat").exists() and " Z " not in Path(f"/proc/{pid}/stat").read_text()


def test_an_injection_prints_brackets_as_they_were_written(capsys: pytest.CaptureFixture[str]) -> None:
    """Rich markup would eat ``[otel]`` or ``[data_class]`` in an effect's or an error's text."""
    from bascule.cli.gameday import _print_event
    from bascule.targets.local.inject import InjectEvent, InjectEventKind

    _print_event(InjectEvent(InjectEventKind.NOTE, "route a->b: [otel] [data_class] [503]", 1.0), 0.0)
    assert "route a->b: [otel] [data_class] [503]" in capsys.readouterr().out
