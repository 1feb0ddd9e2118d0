"""How long the stack, and each own service, may take to start: ``--stack-timeout`` (60 s by
default) for every process, ``start_timeout:`` under a component's ``command:`` when it needs
longer — and a timeout that runs out names the component, the limit and where to raise it."""

from __future__ import annotations

import shutil
from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner

from bascule.cli import app
from bascule.errors import ScenarioError, TargetError
from bascule.model.loading import parse_design
from bascule.targets.local.package import PACKAGE, LocalOptions
from bascule.targets.local.stack import LocalStack

PAR = "scaleway/fr-par"
HERE = Path(__file__).resolve().parent / "start_timeout"


def design_text(after: float, start_timeout: str | None, ready: str = "/") -> str:
    limit = f", start_timeout: {start_timeout}" if start_timeout else ""
    return f"""
id: slow
regions: [{{id: {PAR}}}]
components:
  slow:
    entry: true
    command:
      {{argv: ["{{python}}", late.py, --port, "{{port}}", --after, "{after}"],
        ready: {{path: {ready}}}{limit}}}
    replicas: {{{PAR}: 1}}
"""


def start(tmp_path: Path, text: str, timeout: float) -> LocalStack:
    shutil.copy(HERE / "late.py", tmp_path / "late.py")
    (tmp_path / "d.yaml").write_text(text)
    design = parse_design(text, str(tmp_path / "d.yaml"))
    return LocalStack.start(design, tmp_path / "d.yaml", tmp_path / "run", timeout=timeout)


def test_a_service_slower_than_the_stack_timeout_starts_within_its_own(tmp_path: Path) -> None:
    stack = start(tmp_path, design_text(after=2.5, start_timeout="10s"), timeout=1.0)
    try:
        assert httpx.get(stack.entries()[PAR] + "/", timeout=5).status_code == 200
    finally:
        stack.stop()


def test_a_start_that_runs_out_names_the_component_the_limit_and_where_to_raise_it(tmp_path: Path) -> None:
    with pytest.raises(TargetError) as info:
        start(tmp_path, design_text(after=30, start_timeout=None), timeout=1.0)
    message = str(info.value)
    assert "slow-scaleway-fr-par-0 did not start within 1 s" in message, message
    assert "component slow" in message and "start_timeout:" in message and "--stack-timeout" in message


def test_a_ready_path_the_service_does_not_serve_is_said_so_not_taken_for_a_slow_start(
    tmp_path: Path,
) -> None:
    """A new user's `/healthzz` read "was not ready within 10 s (… raise start_timeout …)": raising
    it would not have helped. The message says what the path last answered."""
    with pytest.raises(TargetError) as info:
        start(tmp_path, design_text(after=0, start_timeout=None, ready="/missing"), timeout=1.5)
    message = str(info.value)
    assert "slow-scaleway-fr-par-0 was not ready within 1.5 s" in message, message
    assert "GET /missing last answered HTTP 404 — is it the path the service serves" in message, message


def test_the_start_timeout_is_a_positive_duration() -> None:
    with pytest.raises(ScenarioError) as info:
        parse_design(design_text(after=1, start_timeout="0s"), "d.yaml")
    assert any("above 0" in p.message and "start_timeout" in str(p) for p in info.value.problems)
    command = parse_design(design_text(after=1, start_timeout="2m"), "d.yaml").components["slow"].command
    assert command is not None and command.start_timeout == 120.0


def test_run_suite_and_compare_take_a_stack_timeout_and_show_its_default() -> None:
    for verb in ("run", "suite", "compare"):
        shown = CliRunner().invoke(app, [verb, "--help"], env={"COLUMNS": "250"}).output
        line = next(line for line in shown.splitlines() if "--stack-timeout" in line)
        assert "[default: 60.0]" in line, (verb, line)
    assert PACKAGE.choose({"stack_timeout": 90.0}).options == LocalOptions(stack_timeout=90.0)
    assert PACKAGE.choose({}).options == LocalOptions(stack_timeout=60.0)
