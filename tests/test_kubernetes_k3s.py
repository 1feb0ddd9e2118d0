"""The throwaway k3s cluster: how bascule finds a container engine and the k3s image, and what it
says when either is missing (the CLI's exit 4); the target file and kubeconfig it writes; and, where
an engine holding the k3s image is reachable, the real thing — otherwise skipped, saying why.

The engine checks run against a small Docker-API server on 127.0.0.1 (the endpoints the Docker SDK
calls to find the API version, the engine's version and an image), so that both answers — image
present, image missing — are exercised over real HTTP without an engine on this machine."""

from __future__ import annotations

import json
import re
import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote

import pytest
import yaml

from bascule.errors import TargetError
from bascule.exit_codes import ExitCode
from bascule.model.loading import read_design
from bascule.targets.kubernetes.cluster import connect
from bascule.targets.kubernetes.k3s import (
    DEFAULT_CONTEXT,
    IMAGE_ENV,
    K3S_IMAGE,
    NODE_REGION_LABEL,
    ClusterUnavailableError,
    Missing,
    check_engine,
    cluster_down,
    cluster_regions,
    cluster_target,
    cluster_up,
    engine_url,
    kubeconfig_for,
    node_name,
    read_cluster,
)
from bascule.targets.kubernetes.mapping import bind, parse_target, read_target
from bascule.targets.kubernetes.resources import NODES

ROOT = Path(__file__).resolve().parent.parent
DESIGN = ROOT / "designs" / "hidden-dependency.yaml"


class _Engine(BaseHTTPRequestHandler):
    """The part of the Docker Engine API that `check_engine` reaches through the Docker SDK."""

    images: frozenset[str] = frozenset()

    def _json(self, status: int, body: object) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:
        path = re.sub(r"^/v[0-9.]+", "", self.path.split("?")[0])
        if path == "/version":
            self._json(
                200,
                {
                    "Version": "28.2.2",
                    "ApiVersion": "1.45",
                    "MinAPIVersion": "1.24",
                    "Components": [{"Name": "Engine", "Version": "28.2.2"}],
                },
            )
            return
        found = re.fullmatch(r"/images/(.+)/json", path)
        if found and unquote(found[1]) in self.images:
            self._json(200, {"Id": "sha256:" + "0" * 64, "RepoTags": [unquote(found[1])]})
            return
        self._json(404, {"message": f"No such image: {unquote(found[1]) if found else path}"})

    def log_message(self, format: str, *args: object) -> None:
        return


@pytest.fixture
def engine() -> Iterator[tuple[str, type[_Engine]]]:
    handler = type("Engine", (_Engine,), {"images": frozenset({K3S_IMAGE})})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"tcp://127.0.0.1:{server.server_address[1]}", handler
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def test_no_engine_anywhere_says_what_is_missing(tmp_path: Path) -> None:
    sockets = [str(tmp_path / "docker.sock"), str(tmp_path / "podman.sock")]
    with pytest.raises(ClusterUnavailableError) as caught:
        engine_url({}, sockets)
    assert caught.value.missing is Missing.ENGINE
    message = str(caught.value)
    assert "no container engine found: DOCKER_HOST is not set" in message
    assert all(s in message for s in sockets)
    assert "start Docker" in message
    # it is a TargetError: what the CLI turns into exit 4
    assert isinstance(caught.value, TargetError)
    assert ExitCode.TARGET_ERROR == 4


def test_docker_host_wins_then_the_first_socket_that_exists(tmp_path: Path) -> None:
    assert engine_url({"DOCKER_HOST": "tcp://127.0.0.1:2375"}, []) == "tcp://127.0.0.1:2375"
    path = tmp_path / "podman.sock"
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        listener.bind(str(path))
        (tmp_path / "plain-file.sock").write_text("not a socket")
        found = engine_url({}, [str(tmp_path / "plain-file.sock"), str(tmp_path / "none.sock"), str(path)])
        assert found == f"unix://{path}"
        # a socket nobody listens on is found, and then does not answer
        listener.close()
        with pytest.raises(ClusterUnavailableError, match="does not answer") as caught:
            check_engine([K3S_IMAGE], environ={}, sockets=[str(path)])
        assert caught.value.missing is Missing.ENGINE
    finally:
        listener.close()


def test_an_engine_that_does_not_answer(tmp_path: Path) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    # nothing listens on that port any more
    with pytest.raises(
        ClusterUnavailableError, match=re.escape(f"at tcp://127.0.0.1:{port} does not answer")
    ) as caught:
        check_engine([K3S_IMAGE], environ={"DOCKER_HOST": f"tcp://127.0.0.1:{port}"})
    assert caught.value.missing is Missing.ENGINE


def test_an_engine_without_the_k3s_image_says_how_to_get_it(engine: tuple[str, type[_Engine]]) -> None:
    url, _ = engine
    wanted = "rancher/k3s:v1.29.0-k3s1"
    with pytest.raises(ClusterUnavailableError) as caught:
        check_engine([wanted], environ={"DOCKER_HOST": url})
    assert caught.value.missing is Missing.IMAGE
    message = str(caught.value)
    assert f"the image {wanted} is not in the container engine at {url} (Docker Engine 28.2.2)" in message
    assert f"docker pull {wanted}" in message and IMAGE_ENV in message and "--pull" in message


def test_an_engine_with_the_images_is_ready(engine: tuple[str, type[_Engine]]) -> None:
    url, _ = engine
    found = check_engine([K3S_IMAGE], environ={"DOCKER_HOST": url})
    assert (found.url, found.name, found.version) == (url, "Docker Engine", "28.2.2")
    with pytest.raises(ClusterUnavailableError, match=re.escape("bascule-stack:0.1.0 is not in")):
        check_engine([K3S_IMAGE, "bascule-stack:0.1.0"], environ={"DOCKER_HOST": url})


def test_cluster_up_without_an_engine_starts_nothing_and_writes_nothing(tmp_path: Path) -> None:
    design = read_design(DESIGN)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with pytest.raises(ClusterUnavailableError):
        cluster_up(design, tmp_path / "k3s", environ={"DOCKER_HOST": f"tcp://127.0.0.1:{port}"})
    assert not (tmp_path / "k3s").exists()


def test_a_cluster_the_engine_will_not_start_leaves_nothing_behind(
    engine: tuple[str, type[_Engine]], tmp_path: Path
) -> None:
    url, handler = engine
    created: list[str] = []

    def refuse(self: _Engine) -> None:
        created.append(self.path)
        self._json(500, {"message": "no privileged containers here"})

    handler.do_POST = refuse
    with pytest.raises(TargetError, match=r"did not come up.*no privileged containers here") as caught:
        cluster_up(read_design(DESIGN), tmp_path / "k3s", environ={"DOCKER_HOST": url})
    assert not isinstance(caught.value, ClusterUnavailableError)
    assert any(path.endswith("/containers/create") for path in created)
    assert list((tmp_path / "k3s").iterdir()) == []


def test_cluster_down_needs_a_recorded_cluster(tmp_path: Path) -> None:
    with pytest.raises(TargetError, match="no cluster recorded"):
        cluster_down(tmp_path)
    (tmp_path / "cluster.json").write_text("{not json")
    with pytest.raises(TargetError, match="cannot read"):
        read_cluster(tmp_path)


def test_the_target_file_maps_every_region_to_its_node() -> None:
    design = read_design(DESIGN)
    assert cluster_regions(design) == ["aws/us-east-1", "scaleway/fr-par"]
    data = cluster_target(design, kubeconfig="/tmp/k3s/kubeconfig")
    target = parse_target(yaml.safe_dump(data), "target.yaml", design)
    mapping = bind(target, design)
    assert target.contexts == (DEFAULT_CONTEXT,)
    for region in cluster_regions(design):
        mapped = mapping.region(region)
        assert mapped is not None
        assert mapped.nodes == {NODE_REGION_LABEL: region.replace("/", "-")}
    assert set(target.components) == {"gateway", "retriever", "store", "llm", "aws-sts"}
    assert node_name("scaleway/fr-par") == "bascule-scaleway-fr-par"


K3S_YAML = """apiVersion: v1
clusters:
- cluster:
    certificate-authority-data: Y2E=
    server: https://localhost:32771
  name: default
contexts:
- context:
    cluster: default
    user: default
  name: default
current-context: default
kind: Config
preferences: {}
users:
- name: default
  user:
    client-certificate-data: Y2VydA==
    client-key-data: a2V5
"""


def test_the_kubeconfig_names_the_context_bascule_uses(tmp_path: Path) -> None:
    text = kubeconfig_for(K3S_YAML, "bascule-k3s")
    config = yaml.safe_load(text)
    assert config["current-context"] == "bascule-k3s"
    assert config["contexts"] == [
        {"context": {"cluster": "bascule-k3s", "user": "bascule-k3s"}, "name": "bascule-k3s"}
    ]
    assert config["clusters"][0]["cluster"]["server"] == "https://localhost:32771"
    assert config["clusters"][0]["cluster"]["tls-server-name"] == "localhost"
    (tmp_path / "kubeconfig").write_text(text)
    design = read_design(DESIGN)
    target = parse_target(yaml.safe_dump(cluster_target(design)), "target.yaml", design)
    apis = connect(target, tmp_path / "kubeconfig")
    try:
        assert apis[DEFAULT_CONTEXT].server == "https://localhost:32771"
    finally:
        for api in apis.values():
            api.close()


def _no_cluster_here() -> str | None:
    """Why no throwaway cluster can start on this machine (no engine, no k3s image), or None."""
    try:
        check_engine([K3S_IMAGE])
    except ClusterUnavailableError as exc:
        return f"no throwaway cluster on this machine: {exc}"
    return None


_NO_CLUSTER = _no_cluster_here()


@pytest.mark.slow
@pytest.mark.skipif(_NO_CLUSTER is not None, reason=_NO_CLUSTER or "")
def test_cluster_up_labels_a_node_per_region_and_down_removes_it(tmp_path: Path) -> None:
    design = read_design(DESIGN)
    cluster = cluster_up(design, tmp_path / "k3s", timeout=300)
    try:
        target = read_target(cluster.target_file, design)
        apis = connect(target)
        try:
            nodes = {
                n["metadata"]["name"]: n["metadata"]["labels"]
                for n in apis[cluster.context].list(NODES, None)
            }
        finally:
            for api in apis.values():
                api.close()
        for region in cluster_regions(design):
            assert nodes[node_name(region)][NODE_REGION_LABEL] == region.replace("/", "-")
    finally:
        removed = cluster_down(tmp_path / "k3s")
    assert sorted(removed) == sorted(cluster.containers)
    assert not cluster.kubeconfig.exists()
