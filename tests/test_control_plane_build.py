"""The control plane's Go module and build script (no build here: see test_kubernetes_control_plane):
the staging modules are pinned to the release matching k8s.io/kubernetes, and the cache directory
is outside the clone, keyed by the pins."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
MODULE = ROOT / "tests" / "controlplane" / "go.mod"
BUILD = ROOT / "scripts" / "build-control-plane"


def test_every_staging_module_is_pinned_to_the_matching_release() -> None:
    text = MODULE.read_text(encoding="utf-8")
    kubernetes = re.search(r"^\s*k8s\.io/kubernetes (v1\.(\d+)\.(\d+))", text, re.M)
    assert kubernetes is not None
    staging = f"v0.{kubernetes[2]}.{kubernetes[3]}"
    replaced = re.findall(r"^\s*(k8s\.io/[\w-]+) => (k8s\.io/[\w-]+) (\S+)$", text, re.M)
    assert len(replaced) >= 30
    assert all(a == b and version == staging for a, b, version in replaced), replaced
    assert "k8s.io/kubernetes/cmd/kube-apiserver" in text
    assert "go.etcd.io/etcd/server/v3\n" in text


@pytest.mark.skipif(shutil.which("go") is None, reason="go is not installed")
def test_the_cache_is_outside_the_clone_and_keyed_by_the_pins(tmp_path: Path) -> None:
    def printed(root: Path) -> Path:
        env = dict(os.environ, BASCULE_CACHE_DIR=str(tmp_path / "cache"))
        answer = subprocess.run(
            [str(root / "scripts" / "build-control-plane"), "--print"],
            capture_output=True,
            text=True,
            env=env,
            check=True,
            timeout=60,
        )
        return Path(answer.stdout.strip())

    first = printed(ROOT)
    assert first == printed(ROOT)
    assert first.parent == tmp_path / "cache" / "control-plane"
    assert first.name.startswith("k8s-v1.")
    # Another pin, another directory: a copy of the script and module with one line changed.
    copy = tmp_path / "clone"
    (copy / "scripts").mkdir(parents=True)
    shutil.copy(BUILD, copy / "scripts")
    shutil.copytree(MODULE.parent, copy / "tests" / "controlplane")
    changed = copy / "tests" / "controlplane" / "go.mod"
    changed.write_text(changed.read_text(encoding="utf-8") + "\n// another pin\n", encoding="utf-8")
    assert printed(copy) != first


def _requires(path: Path) -> dict[str, str]:
    """Every module a go.mod requires, with its version; and each replacement, keyed `=> module`."""
    text = path.read_text(encoding="utf-8")
    found = dict(re.findall(r"^\s*([\w./-]+) (v\S+)(?: // indirect)?$", text, re.M))
    found.update({f"=> {a}": f"{b} {v}" for a, b, v in re.findall(r"^\s*(\S+) => (\S+) (\S+)$", text, re.M)})
    return found


def test_the_controllers_module_pins_kubernetes_as_the_top_module_does() -> None:
    """kube-controller-manager and kube-scheduler are built in a module of their own (their kubelet
    imports need go.sum entries the top module lacks); every module both require, and every
    replacement, has the same version — the same Kubernetes, and the build cache shared."""
    top = _requires(MODULE)
    controllers = _requires(MODULE.parent / "controllers" / "go.mod")
    shared = set(top) & set(controllers)
    assert {"k8s.io/kubernetes", "k8s.io/client-go", "=> k8s.io/api", "=> k8s.io/kube-scheduler"} <= shared
    assert {m: (top[m], controllers[m]) for m in shared if top[m] != controllers[m]} == {}
    assert {m for m in top if m.startswith("=> ")} == {m for m in controllers if m.startswith("=> ")}
    text = (MODULE.parent / "controllers" / "go.mod").read_text(encoding="utf-8")
    assert "k8s.io/kubernetes/cmd/kube-controller-manager" in text
    assert "k8s.io/kubernetes/cmd/kube-scheduler" in text


def test_kwok_is_pinned_to_a_release_and_built_by_the_script() -> None:
    kwok = _requires(MODULE.parent / "kwok" / "go.mod")
    assert re.fullmatch(r"v\d+\.\d+\.\d+", kwok["sigs.k8s.io/kwok"])
    script = BUILD.read_text(encoding="utf-8")
    for entry in (
        '"kube-controller-manager=controllers:k8s.io/kubernetes/cmd/kube-controller-manager"',
        '"kube-scheduler=controllers:k8s.io/kubernetes/cmd/kube-scheduler"',
        '"kwok=kwok:sigs.k8s.io/kwok/cmd/kwok"',
    ):
        assert entry in script


def test_chaos_mesh_s_controller_manager_and_daemon_stand_in_are_pinned_to_the_crds_version() -> None:
    """Chaos Mesh's controller-manager is built from the module whose CRDs the script installs, its
    api module the one chaosmesh-webhook uses (the only one the Go proxy serves), replacing the
    v0.0.0 Chaos Mesh requires (its own go.mod replaces it with ./api, which a dependency cannot);
    the daemon stand-in's service definition comes from the same module."""
    script = BUILD.read_text(encoding="utf-8")
    pinned = re.search(r'^chaos_mesh="github\.com/chaos-mesh/chaos-mesh@(\S+)"$', script, re.M)
    assert pinned is not None
    webhook = _requires(MODULE.parent / "chaosmesh-webhook" / "go.mod")
    api = "github.com/chaos-mesh/chaos-mesh/api"
    for name in ("chaos-controller-manager", "chaos-daemon-standin"):
        path = MODULE.parent / name / "go.mod"
        assert _requires(path)["github.com/chaos-mesh/chaos-mesh"] == pinned[1], name
        # In a replace block or on a line of its own (as `go mod tidy` writes a single one).
        replaced = re.findall(rf"^\s*(?:replace )?{re.escape(api)} => (\S+) (\S+)$", path.read_text(), re.M)
        assert replaced == [(api, webhook[api])], name
    manager = _requires(MODULE.parent / "chaos-controller-manager" / "go.mod")
    assert manager["=> k8s.io/client-go"] == "k8s.io/client-go v0.35.3"  # Chaos Mesh's replacement
    for entry in (
        '"chaos-controller-manager=chaos-controller-manager:'
        'github.com/chaos-mesh/chaos-mesh/cmd/chaos-controller-manager"',
        '"chaos-daemon-standin=chaos-daemon-standin:."',
    ):
        assert entry in script
