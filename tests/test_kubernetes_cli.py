"""The Kubernetes target from the command line: ``bascule plan --target kubernetes`` prints the API
calls of every action and makes none (the emulators' request logs say so); ``--discover`` only
reads; refusals exit 2."""

from __future__ import annotations

from pathlib import Path

import pytest
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


def test_render_then_deploy_from_the_command_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import kube_emulator
    from test_kubernetes_deploy import STORED, NamespaceEmulator

    monkeypatch.setattr(kube_emulator, "Emulator", NamespaceEmulator)
    design, _, target_file = _files(tmp_path)
    out = tmp_path / "k8s"
    args = ["render", "kubernetes", "-d", str(design), "--target-file", str(target_file)]
    args += ["--out", str(out), "--image", "bascule-stack:0.1.0", "--namespace", "rag"]
    first = runner.invoke(app, args)
    assert first.exit_code == 0, first.output
    secret_file = out / "aws.secrets.yaml"
    assert secret_file.stat().st_mode & 0o777 == 0o600
    kept = secret_file.read_text()
    again = runner.invoke(app, args)
    assert again.exit_code == 0 and secret_file.read_text() == kept, "a new render keeps the token secret"

    with kube_emulator.running(kube_emulator.Cluster("aws"), kube_emulator.Cluster("scw")) as (aws, scw):
        kubeconfig = kube_emulator.write_kubeconfig(tmp_path / "kubeconfig", {"aws": aws, "scw": scw})
        deploy = ["deploy", str(out), "--target-file", str(target_file), "--kubeconfig", str(kubeconfig)]
        deploy += ["--confirm", "aws", "--confirm", "scw"]  # kmock's clusters have no identity
        result = runner.invoke(app, deploy, env={"COLUMNS": "200"})
        assert result.exit_code == 0, result.output
        assert aws.get(STORED["Deployment"], "rag", "gateway--aws-us-east-1") is not None
        assert scw.get(STORED["Service"], "rag", "store--scaleway-fr-par") is not None
        writes = len([r for c in (aws, scw) for r in c.requests() if r[0] != "GET"])
        result = runner.invoke(app, deploy, env={"COLUMNS": "200"})
        assert result.exit_code == 0 and "unchanged" in result.output
        assert len([r for c in (aws, scw) for r in c.requests() if r[0] != "GET"]) == writes


def test_render_refuses_what_it_cannot_express(tmp_path: Path) -> None:
    target_file = tmp_path / "t.yaml"
    target_file.write_text(
        "contexts: [aws]\nregions: {scaleway/fr-par: {context: aws}}\n"
        "components: {api: {namespace: rag, selector: {app: api}}}\n"
    )
    own = tmp_path / "own.yaml"
    own.write_text(
        "id: own\nregions: [{id: scaleway/fr-par}]\n"
        "components:\n"
        "  api: {entry: true, command: {argv: [serve, '{port}']}, replicas: {scaleway/fr-par: 1}}\n"
    )
    args = ["render", "kubernetes", "-d", str(own), "--target-file", str(target_file)]
    result = runner.invoke(app, [*args, "--out", str(tmp_path / "o"), "--image", "x:1"])
    assert result.exit_code == 2 and "api" in result.output
    assert not (tmp_path / "o").exists()


def test_cluster_up_without_a_container_engine_exits_4_and_says_what_is_missing(tmp_path: Path) -> None:
    env = {"DOCKER_HOST": f"unix://{tmp_path / 'no-engine.sock'}", "COLUMNS": "200"}
    design, _, _ = _files(tmp_path)
    result = runner.invoke(app, ["cluster", "up", "-d", str(design), "--dir", str(tmp_path / "c")], env=env)
    assert result.exit_code == 4, result.output
    assert "engine" in result.output.lower()
