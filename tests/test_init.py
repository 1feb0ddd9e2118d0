"""``bascule init``: the files it writes for a service of your own load, validate and plan; what
it refuses, it refuses with the reason."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from bascule.cli import app
from bascule.model.design import ComponentKind
from bascule.model.loading import read_design, read_scenario, scenario_design_path
from bascule.plan import plan

runner = CliRunner()


def _init(tmp_path: Path, *args: str) -> tuple[int, str]:
    result = runner.invoke(app, ["init", "--dir", str(tmp_path), *args], env={"COLUMNS": "200"})
    return result.exit_code, result.output


def test_a_command_service_gets_a_design_and_a_scenario_that_plan(tmp_path: Path) -> None:
    code, output = _init(
        tmp_path,
        "-c",
        "{python} app.py --port {port}",
        "-r",
        "scaleway/fr-par",
        "-r",
        "ovhcloud/gra",
        "--name",
        "Notes API",
        "--availability",
        "0.995",
        "--rto",
        "20s",
    )
    assert code == 0, output
    design = read_design(tmp_path / "design.yaml")
    scenario_path = tmp_path / "scenario.yaml"
    scenario = read_scenario(scenario_path)
    assert scenario_design_path(scenario_path, scenario) == tmp_path / "design.yaml"
    component = design.components["notes-api"]
    assert design.component_kind("notes-api") is ComponentKind.SERVICE and component.entry
    assert component.command is not None and component.command.argv == (
        "{python}",
        "app.py",
        "--port",
        "{port}",
    )
    assert design.routing_order == ("scaleway/fr-par", "ovhcloud/gra")
    assert scenario.objectives.availability == 0.995 and scenario.objectives.rto == 20.0
    built = plan(design, scenario)
    assert [p.kind for p in built.phases] == ["blackhole", "crash"]
    assert all(not p.touch.empty for p in built.phases)
    result = runner.invoke(app, ["validate", str(tmp_path / "design.yaml"), str(scenario_path)])
    assert result.exit_code == 0, result.output


def test_a_running_service_gets_routes_and_no_crash(tmp_path: Path) -> None:
    code, output = _init(tmp_path, "-u", "scaleway/fr-par=http://127.0.0.1:8080", "-r", "scaleway/fr-par")
    assert code == 0, output
    design = read_design(tmp_path / "design.yaml")
    (name,) = design.components
    assert design.components[name].url == {"scaleway/fr-par": "http://127.0.0.1:8080"}
    built = plan(design, read_scenario(tmp_path / "scenario.yaml"))
    assert [p.kind for p in built.phases] == ["blackhole"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ((), "give --command"),
        (("-c", "app --listen 8080"), "put {port} in it"),
        (("-c", "app {port}", "-r", "scaleway/fr-parr"), "did you mean 'scaleway/fr-par'"),
        (("-c", "app {port}", "-u", "http://127.0.0.1:1"), "not both"),
        (("-u", "scaleway/fr-par=https://x.example"), "http://HOST:PORT"),
        (("-u", "scaleway/fr-par=http://127.0.0.1:1"), "no --url for ovhcloud/gra"),
    ],
)
def test_refusals_say_why_and_write_nothing(tmp_path: Path, args: tuple[str, ...], message: str) -> None:
    code, output = _init(tmp_path, *args)
    assert code == 2 and message in " ".join(output.split()), output
    assert not (tmp_path / "design.yaml").exists()


def test_existing_files_are_kept_unless_forced(tmp_path: Path) -> None:
    (tmp_path / "design.yaml").write_text("mine\n")
    code, output = _init(tmp_path, "-c", "app {port}")
    assert code == 2 and "--force" in output and (tmp_path / "design.yaml").read_text() == "mine\n"
    code, output = _init(tmp_path, "-c", "app {port}", "--force")
    assert code == 0, output
    assert (tmp_path / "design.yaml").read_text() != "mine\n"
