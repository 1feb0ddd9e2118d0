"""Refusals on real API servers: clusters whose discovery shows no Chaos Mesh (its CRDs are not
installed in these kube-apiservers) cannot `hang` a component; ``bascule plan --discover`` refuses
that phase with the reason, exits 2, and changes nothing in the clusters (the pure refusals of
protected namespaces and unlisted contexts need no cluster: tests/test_kubernetes_calls.py)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from control_plane import NEEDS_CONTROL_PLANE, running_control_plane
from kube_real import RealCluster, prepare_clusters, real_world
from test_kubernetes_cli import _files
from typer.testing import CliRunner

from bascule.cli import app

pytestmark = [pytest.mark.slow, NEEDS_CONTROL_PLANE]

runner = CliRunner()


@pytest.fixture(scope="module")
def clusters(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, RealCluster]]:
    with running_control_plane(tmp_path_factory.mktemp("control-plane"), ["aws", "scw"]) as plane:
        yield prepare_clusters(plane, chaos_mesh=False)


def test_plan_refuses_on_real_clusters_what_their_api_cannot_do(
    tmp_path: Path, clusters: dict[str, RealCluster]
) -> None:
    design, scenario, target_file = _files(tmp_path)
    with real_world(tmp_path, clusters) as w:
        before = w.snapshot()
        served = {g["name"] for g in clusters["aws"].server.admin.request("GET", "/apis")["groups"]}
        assert "chaos-mesh.org" not in served, "no Chaos Mesh in these clusters"
        args = ["plan", str(scenario), "-d", str(design), "--target", "kubernetes", "--discover"]
        args += ["--target-file", str(target_file), "--kubeconfig", str(w.kubeconfig)]
        result = runner.invoke(app, args, env={"COLUMNS": "250"})
        after = w.snapshot()
    assert result.exit_code == 2, result.output
    assert "refused" in result.output and "hang" in result.output and "Chaos Mesh" in result.output
    assert after == before, "planning changed nothing"
