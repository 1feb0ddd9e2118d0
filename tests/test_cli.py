"""The command line: validate, plan, --version, --help, exit codes."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from bascule import __version__
from bascule.cli import ExitCode, app

runner = CliRunner()


def test_version() -> None:
    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0 and __version__ in result.output
    # Which byte searches the fault proxy runs: the compiled ones, where `pip install` built them.
    from bascule.targets.local.proxy import scan

    said = "compiled byte searches" if scan.COMPILED else "pure-Python byte searches"
    assert f"fault proxy: {said}" in result.output


@pytest.mark.parametrize("verb", ["validate", "plan", "faults", "regions"])
def test_every_verb_has_help_with_an_example(verb: str) -> None:
    result = runner.invoke(app, [verb, "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0
    assert "Example" in result.output and f"bascule {verb}" in result.output


def test_validate_three_mistakes_exits_2_with_three_located_errors(root: Path) -> None:
    bad = root / "tests" / "samples" / "three-mistakes.yaml"
    # A real process: the console script's exit code, as a CI pipeline sees it.
    proc = subprocess.run(
        [sys.executable, "-c", "from bascule.cli import main; main()", "validate", str(bad)],
        capture_output=True,
        text=True,
        env={"COLUMNS": "250", "PATH": "/usr/bin:/bin"},
        check=False,
    )
    assert proc.returncode == ExitCode.INVALID_INPUT == 2
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error ")]
    assert [e.split(":")[1] for e in errors] == ["7", "13", "15"]


def test_validate_accepts_the_examples(root: Path) -> None:
    files = [
        root / "designs" / "active-passive-sovereign.yaml",
        root / "scenarios" / "incidents" / "aws-us-east-1-2025-10-20.yaml",
    ]
    result = runner.invoke(app, ["validate", *map(str, files)], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert "plans against" in result.output


def test_validate_refuses_what_plan_and_run_refuse(root: Path, tmp_path: Path) -> None:
    """A scenario on services of one's own that `run` would refuse (its load says nothing of what
    to send them) or the local target would (a dns fault on a name nobody is given): `validate`
    says so too, with the same reason, instead of "ok" (seen in a user's trial)."""
    example = root / "examples" / "own-service"
    text = (example / "scenario.yaml").read_text()
    no_requests = tmp_path / "no-requests.yaml"
    no_requests.write_text(
        text.replace("design: design.yaml", f"design: {example / 'design.yaml'}").split("  requests:")[0]
        + "\nobjectives: {availability: 0.95}\n"
    )
    by_address = tmp_path / "by-address.yaml"
    by_address.write_text(
        (example / "scenario-dns.yaml")
        .read_text()
        .replace("design: design-names.yaml", f"design: {example / 'design.yaml'}")
    )
    for scenario, reason in [
        (no_requests, "say what the load sends it in load.requests"),
        (by_address, "is given its name"),
    ]:
        result = runner.invoke(app, ["validate", str(scenario)], env={"COLUMNS": "400"})
        assert result.exit_code == 2, result.output
        assert reason in result.output
        result = runner.invoke(app, ["plan", str(scenario)], env={"COLUMNS": "400"})
        assert result.exit_code == 2 and reason in result.output, result.output
    fine = runner.invoke(
        app, ["validate", str(example / "scenario.yaml"), str(example / "scenario-dns.yaml")]
    )
    assert fine.exit_code == 0, fine.output


def test_validate_rejects_a_file_that_is_neither(tmp_path: Path) -> None:
    other = tmp_path / "other.yaml"
    other.write_text("hello: world\n")
    result = runner.invoke(app, ["validate", str(other)])
    assert result.exit_code == 2


def test_plan_prints_every_phase_with_real_and_run_offsets(
    aws_scenario_path: Path, aps_design_path: Path
) -> None:
    result = runner.invoke(
        app, ["plan", str(aws_scenario_path), "--design", str(aps_design_path)], env={"COLUMNS": "250"}
    )
    assert result.exit_code == 0, result.output
    out = result.output
    assert "replayed in 60.0 s" in out
    for name in ["DynamoDB endpoint record empty", "STS and sign-in failing", "STS errors again"]:
        assert name in out
    assert "+2h37m" in out and "10.80s" in out
    assert "+7h43m → +9h11m" in out and "31.86s →   37.91s" in out
    assert "Findings" in out and "no-failover" in out


def test_plan_json(aws_scenario_path: Path) -> None:
    # No --design: the scenario names its default design.
    result = runner.invoke(app, ["plan", str(aws_scenario_path), "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert data["schema"] == "bascule.plan/1"
    assert data["time"]["run_length_s"] == pytest.approx(60.0)
    assert len(data["phases"]) == 6
    assert all(p["run_end_s"] - p["run_start_s"] >= 3.0 for p in data["phases"])
    assert data["phases"][0]["fault"] == {"kind": "dns", "answer": "nodata", "new_connections_only": True}


def test_plan_of_hidden_dependency_reports_it(aws_scenario_path: Path, root: Path) -> None:
    result = runner.invoke(
        app,
        ["plan", str(aws_scenario_path), "-d", str(root / "designs" / "hidden-dependency.yaml")],
        env={"COLUMNS": "250"},
    )
    assert result.exit_code == 0
    assert "hidden-dependency" in result.output and "relies on identity service 'aws-sts'" in result.output


def test_plan_errors_exit_2(tmp_path: Path, aps_design_path: Path) -> None:
    bad = tmp_path / "s.yaml"
    bad.write_text(
        "id: s\ntitle: t\nphases:\n  - {name: a, at: 0s, for: 1m, fault: {kind: crash}, "
        "target: {component: gatewya}}\n"
    )
    result = runner.invoke(app, ["plan", str(bad), "-d", str(aps_design_path)])
    assert result.exit_code == 2
    assert "did you mean 'gateway'" in result.output


def test_faults_lists_every_kind() -> None:
    result = runner.invoke(app, ["faults"], env={"COLUMNS": "250"})
    assert result.exit_code == 0
    for kind in ["region-outage", "dns", "flap", "identity", "data-loss", "throttle", "partition"]:
        assert kind in result.output


_FINISHED_RUN = """
import atexit, sys, threading, time
from bascule import cli
atexit.register(lambda: print("atexit handler ran", flush=True))
class Mark:
    def __del__(self) -> None:
        print("interpreter torn down", flush=True)
mark = Mark()  # finalised when the interpreter tears its modules down
if sys.argv[1] == "thread":
    def late() -> None:
        time.sleep(0.5)
        print("worker thread finished", flush=True)
    threading.Thread(target=late).start()
cli._done_with_everything.set()  # as `bascule run` does once its reports are written
sys.stdout.write("written, not yet flushed")
sys.argv = ["bascule", "validate", sys.argv[2]]
cli.main()
"""


@pytest.mark.parametrize("thread", [False, True], ids=["quick-exit", "waits-for-a-thread"])
def test_a_finished_run_exits_quickly_with_its_code_streams_and_atexit_handlers(
    root: Path, thread: bool
) -> None:
    bad = root / "tests" / "samples" / "three-mistakes.yaml"
    proc = subprocess.run(
        [sys.executable, "-c", _FINISHED_RUN, "thread" if thread else "-", str(bad)],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert proc.returncode == ExitCode.INVALID_INPUT, proc.stderr
    assert "written, not yet flushed" in proc.stdout and "atexit handler ran" in proc.stdout
    assert ("worker thread finished" in proc.stdout) is thread
    # Quick: no teardown (1.1–1.4 s of bascule's modules on a loaded machine); with a thread still
    # working, the normal exit that waits for it.
    assert ("interpreter torn down" in proc.stdout) is thread
    assert proc.stderr.count("error ") == 3
