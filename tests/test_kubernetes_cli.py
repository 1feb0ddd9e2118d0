"""The Kubernetes target from the command line: ``bascule plan --target kubernetes`` prints the API
calls of every action and makes none (the emulators' request logs say so); ``--discover`` only
reads; refusals exit 2."""

from __future__ import annotations

from pathlib import Path

from kube_world import DESIGN, TARGET, world
from test_kubernetes_calls import SCENARIO
from typer.testing import CliRunner

from bascule.cli import app

runner = CliRunner()


def _files(tmp_path: Path, target: str = TARGET) -> tuple[Path, Path, Path]:
    design, scenario, target_file = tmp_path / "d.yaml", tmp_path / "s.yaml", tmp_path / "t.yaml"
    design.write_text(DESIGN)
    scenario.write_text(SCENARIO)
    target_file.write_text(target)
    return design, scenario, target_file


def test_plan_lists_the_calls_and_makes_none(tmp_path: Path) -> None:
    design, scenario, target_file = _files(tmp_path)
    with world(tmp_path) as w:
        before = w.request_count()
        args = ["plan", str(scenario), "-d", str(design), "--target", "kubernetes"]
        args += ["--target-file", str(target_file), "--kubeconfig", str(w.kubeconfig)]
        result = runner.invoke(app, args, env={"COLUMNS": "250"})
        assert result.exit_code == 0, result.output
        assert w.request_count() == before, "planning asked nothing of the clusters"
        lines = result.output.splitlines()
        assert sum(line.lstrip().startswith(("create", "patch", "delete")) for line in lines) > 10
        assert any("apply" in line and "region-outage" in line for line in lines)

        result = runner.invoke(app, [*args, "--discover"], env={"COLUMNS": "250"})
        assert result.exit_code == 0, result.output
        methods = {request[0] for c in w.clusters.values() for request in c.requests()}
        assert methods == {"GET"}, "discovery reads, and only reads"


def test_plan_refuses_what_the_clusters_cannot_do(tmp_path: Path) -> None:
    # Without Chaos Mesh (discovered), the hang of the llm has nothing to act through.
    design, scenario, target_file = _files(tmp_path)
    with world(tmp_path, chaos_mesh=False) as w:
        args = ["plan", str(scenario), "-d", str(design), "--target", "kubernetes", "--discover"]
        args += ["--target-file", str(target_file), "--kubeconfig", str(w.kubeconfig)]
        result = runner.invoke(app, args, env={"COLUMNS": "250"})
    assert result.exit_code == 2
    assert "refused" in result.output and "hang" in result.output and "Chaos Mesh" in result.output


def test_plan_needs_a_target_file(tmp_path: Path) -> None:
    design, scenario, _ = _files(tmp_path)
    result = runner.invoke(app, ["plan", str(scenario), "-d", str(design), "--target", "kubernetes"])
    assert result.exit_code == 2 and "--target-file" in result.output
