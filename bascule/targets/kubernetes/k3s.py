"""A throwaway Kubernetes cluster for CI: ``bascule cluster up`` / ``bascule cluster down``.

`cluster_up` starts k3s in containers through testcontainers (`K3SContainer` for the server, plain
containers of the same image for the agents): one node per region of the design, named
``bascule-<region slug>`` and labelled ``topology.kubernetes.io/region=<region slug>``. It writes
into its directory a kubeconfig (one context, ``bascule-k3s``), a target file mapping the design
onto those nodes (``target.yaml``: every region by node label, every component and identity
dependency by its ``bascule.io/component`` label in one namespace, as ``render_manifests`` labels
them) and ``cluster.json``, which `cluster_down` reads to remove the containers.

Nothing is pulled unless asked (``pull=True``): `check_engine` first finds the container engine
(``DOCKER_HOST``, else the usual Docker and Podman sockets), asks it for its version, and checks
that the k3s image (and every image to load into the nodes) is present. What is missing raises
`ClusterUnavailableError` naming it — the CLI's exit 4. Testcontainers' reaper (Ryuk) is not used: the
cluster outlives the command that started it, and the reaper's image would need pulling too.

Images built locally (the stack's, from ``deploy/Dockerfile``) are copied into every node's
containerd (``load_images``), since the nodes cannot pull them from the engine.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import secrets
import tarfile
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any, Final

import yaml

from bascule.errors import TargetError
from bascule.model.design import DependencyKind, Design
from bascule.model.names import region_slug
from bascule.targets.kubernetes.cluster import KubeApi, connect_contexts
from bascule.targets.kubernetes.render import COMPONENT_LABEL, DEFAULT_PORT, REGION_LABEL
from bascule.targets.kubernetes.resources import NODES

__all__ = [
    "DEFAULT_CONTEXT",
    "IMAGE_ENV",
    "K3S_IMAGE",
    "NODE_REGION_LABEL",
    "ClusterUnavailableError",
    "Engine",
    "KubeCluster",
    "Missing",
    "check_engine",
    "cluster_down",
    "cluster_regions",
    "cluster_target",
    "cluster_up",
    "default_sockets",
    "engine_url",
    "kubeconfig_for",
    "node_name",
    "read_cluster",
]

K3S_IMAGE: Final = "rancher/k3s:v1.36.4-k3s1"
"""The k3s image `cluster_up` starts unless told otherwise (``image=`` or ``BASCULE_K3S_IMAGE``)."""
IMAGE_ENV: Final = "BASCULE_K3S_IMAGE"
DEFAULT_CONTEXT: Final = "bascule-k3s"
NODE_REGION_LABEL: Final = "topology.kubernetes.io/region"
STATE_FILE: Final = "cluster.json"
KUBECONFIG_FILE: Final = "kubeconfig"
TARGET_FILE: Final = "target.yaml"
_CONTAINER_LABEL: Final = "bascule.io/cluster"
_API_PORT: Final = 6443
_ENGINE_TIMEOUT_S: Final = 10


class Missing(StrEnum):
    """What a throwaway cluster needs and this machine lacks."""

    PACKAGE = "package"
    """testcontainers (and the Docker SDK): ``pip install 'bascule[k3s]'``."""
    ENGINE = "engine"
    """A reachable container engine (Docker, or Podman's Docker-compatible service)."""
    IMAGE = "image"
    """The k3s image, or an image to load into the nodes, in that engine."""


class ClusterUnavailableError(TargetError):
    """A throwaway cluster cannot start here; `missing` says what is lacking, the message how to fix it."""

    def __init__(self, missing: Missing, message: str) -> None:
        self.missing = missing
        super().__init__(message)


@dataclass(frozen=True)
class Engine:
    url: str
    name: str
    """``Docker Engine``, ``Podman Engine``…"""
    version: str
    """The engine's own version (``Version`` of ``GET /version``)."""


@dataclass(frozen=True)
class KubeCluster:
    """A cluster `cluster_up` started, as recorded in its directory."""

    directory: Path
    context: str
    image: str
    engine_url: str
    nodes: Mapping[str, str]
    """Region id → node name."""
    containers: tuple[str, ...]
    """Container ids, the server's first."""

    @property
    def kubeconfig(self) -> Path:
        return self.directory / KUBECONFIG_FILE

    @property
    def target_file(self) -> Path:
        return self.directory / TARGET_FILE


# -- finding the engine --------------------------------------------------------------------------


def default_sockets(environ: Mapping[str, str]) -> list[str]:
    """Where Docker and Podman usually listen, in the order they are tried."""
    out = ["/var/run/docker.sock", "/run/docker.sock"]
    home = environ.get("HOME")
    if home:
        out.append(os.path.join(home, ".docker", "run", "docker.sock"))
    runtime = environ.get("XDG_RUNTIME_DIR")
    if runtime:
        out += [os.path.join(runtime, "docker.sock"), os.path.join(runtime, "podman", "podman.sock")]
    out.append("/run/podman/podman.sock")
    return out


def engine_url(environ: Mapping[str, str] | None = None, sockets: Sequence[str] | None = None) -> str:
    """The container engine's address: ``DOCKER_HOST``, else the first of `sockets` (by default
    `default_sockets`) that exists. Raises `ClusterUnavailableError` (engine) when there is none."""
    env = os.environ if environ is None else environ
    host = env.get("DOCKER_HOST", "").strip()
    if host:
        return host
    candidates = list(default_sockets(env) if sockets is None else sockets)
    for candidate in candidates:
        if Path(candidate).is_socket():
            return f"unix://{candidate}"
    raise ClusterUnavailableError(
        Missing.ENGINE,
        "no container engine found: DOCKER_HOST is not set and none of "
        + ", ".join(candidates)
        + " is a socket. A throwaway cluster runs k3s in containers: start Docker (or Podman's "
        "service: podman system service) and set DOCKER_HOST if it listens elsewhere",
    )


def _docker() -> Any:
    try:
        import docker  # type: ignore[import-untyped]
    except ImportError as exc:
        raise ClusterUnavailableError(
            Missing.PACKAGE,
            "a throwaway cluster needs testcontainers and the Docker SDK: pip install 'bascule[k3s]'",
        ) from exc
    return docker


def _client(url: str) -> tuple[Any, Engine]:
    docker = _docker()
    try:
        client = docker.DockerClient(base_url=url, version="auto", timeout=_ENGINE_TIMEOUT_S)
        version = client.version()
    except docker.errors.DockerException as exc:
        raise ClusterUnavailableError(
            Missing.ENGINE, f"the container engine at {url} does not answer: {exc}"
        ) from exc
    return client, Engine(url, _engine_name(version), str(version.get("Version", "unknown")))


def _engine_name(version: Mapping[str, Any]) -> str:
    # Docker calls its main component "Engine"; Podman's Docker-compatible API says "Podman Engine".
    components = version.get("Components") or []
    first = components[0].get("Name", "") if components and isinstance(components[0], Mapping) else ""
    return "Docker Engine" if first in ("", "Engine") else str(first)


def _has_image(client: Any, image: str) -> bool:
    docker = _docker()
    try:
        client.images.get(image)
    except docker.errors.ImageNotFound:
        return False
    except docker.errors.DockerException as exc:
        raise ClusterUnavailableError(Missing.ENGINE, f"cannot ask the engine about {image}: {exc}") from exc
    return True


def check_engine(
    images: Sequence[str],
    *,
    environ: Mapping[str, str] | None = None,
    sockets: Sequence[str] | None = None,
    pull: bool = False,
) -> Engine:
    """The engine a cluster would start in, once it answers and holds every one of `images` (pulled
    when `pull`). Raises `ClusterUnavailableError` saying what is missing; starts nothing."""
    url = engine_url(environ, sockets)
    client, engine = _client(url)
    try:
        for image in images:
            if _has_image(client, image):
                continue
            if not pull:
                raise ClusterUnavailableError(
                    Missing.IMAGE,
                    f"the image {image} is not in the container engine at {url} "
                    f"({engine.name} {engine.version}), and bascule pulls nothing unless asked: "
                    f"docker pull {image} (or docker load it), or pass --pull, or set {IMAGE_ENV} to a "
                    "k3s image the engine has",
                )
            try:
                client.images.pull(image)
            except _docker().errors.DockerException as exc:
                raise ClusterUnavailableError(
                    Missing.IMAGE, f"cannot pull {image} into {url}: {exc}"
                ) from exc
    finally:
        client.close()
    return engine


# -- what the cluster holds (pure) ---------------------------------------------------------------


def node_name(region: str) -> str:
    """The node that is region `region`: ``bascule-aws-us-east-1``."""
    return f"bascule-{region_slug(region)}"


def cluster_regions(design: Design) -> list[str]:
    """One node each: the design's regions, then the regions of identity dependencies outside them."""
    out = [spec.id for spec in design.regions]
    for dep in design.dependencies.values():
        if dep.kind is DependencyKind.IDENTITY and dep.region not in out:
            out.append(dep.region)
    return out


def cluster_target(
    design: Design,
    *,
    context: str = DEFAULT_CONTEXT,
    kubeconfig: str | None = None,
    namespace: str = "bascule",
    label_key: str = NODE_REGION_LABEL,
) -> dict[str, Any]:
    """The target file of a throwaway cluster for `design`: each region one node (by `label_key`),
    each component and identity dependency in `namespace`, selected as `render_manifests` labels it."""
    regions = {
        region: {
            "context": context,
            "nodes": {label_key: region_slug(region)},
            "pods": {REGION_LABEL: region_slug(region)},
        }
        for region in cluster_regions(design)
    }
    names = list(design.components) + [
        n for n, d in design.dependencies.items() if d.kind is DependencyKind.IDENTITY
    ]
    components = {
        name: {"namespace": namespace, "selector": {COMPONENT_LABEL: name}, "port": DEFAULT_PORT}
        for name in names
    }
    out: dict[str, Any] = {"contexts": [context]}
    if kubeconfig is not None:
        out["kubeconfig"] = kubeconfig
    out["regions"] = regions
    out["components"] = components
    return out


def kubeconfig_for(raw: str, context: str) -> str:
    """k3s's own kubeconfig with its cluster, user and context (all ``default``) renamed `context`,
    and ``localhost`` — which k3s's serving certificate always names — as the server's TLS name,
    whichever address testcontainers reaches the mapped port at (a gateway, inside a container)."""
    config = yaml.safe_load(raw)
    for section in ("clusters", "users", "contexts"):
        for entry in config.get(section) or []:
            entry["name"] = context
    for entry in config.get("clusters") or []:
        entry["cluster"]["tls-server-name"] = "localhost"
    for entry in config.get("contexts") or []:
        entry["context"]["cluster"] = context
        entry["context"]["user"] = context
    config["current-context"] = context
    return str(yaml.safe_dump(config, sort_keys=False))


# -- effects -------------------------------------------------------------------------------------


def _write_private(path: Path, text: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(text)


def read_cluster(directory: str | Path) -> KubeCluster:
    """The cluster recorded in `directory`. Raises `TargetError` when there is none."""
    root = Path(directory)
    try:
        data = json.loads((root / STATE_FILE).read_text(encoding="utf-8"))
        return KubeCluster(
            directory=root,
            context=str(data["context"]),
            image=str(data["image"]),
            engine_url=str(data["engine_url"]),
            nodes={str(k): str(v) for k, v in data["nodes"].items()},
            containers=tuple(str(c) for c in data["containers"]),
        )
    except FileNotFoundError as exc:
        raise TargetError(f"no cluster recorded in {root} (no {STATE_FILE}): nothing to take down") from exc
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        raise TargetError(f"cannot read {root / STATE_FILE}: {exc}") from exc


def _record(cluster: KubeCluster) -> None:
    data = {
        "context": cluster.context,
        "image": cluster.image,
        "engine_url": cluster.engine_url,
        "nodes": dict(cluster.nodes),
        "containers": list(cluster.containers),
    }
    _write_private(cluster.directory / STATE_FILE, json.dumps(data, indent=2) + "\n")


def _wait_for_nodes(api: KubeApi, names: Sequence[str], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    ready: set[str] = set()
    while time.monotonic() < deadline:
        try:
            nodes = api.list(NODES, None)
        except TargetError:
            nodes = []
        ready = {
            str(n["metadata"]["name"])
            for n in nodes
            if any(
                c.get("type") == "Ready" and c.get("status") == "True"
                for c in (n.get("status") or {}).get("conditions") or []
            )
        }
        if set(names) <= ready:
            return
        time.sleep(2.0)
    missing = sorted(set(names) - ready)
    raise TargetError(f"k3s nodes {', '.join(missing)} not Ready after {timeout:g} s")


def _load_image(client: Any, image: str, containers: Sequence[Any]) -> None:
    """Copy `image` from the engine into each node's containerd (the nodes cannot pull it)."""
    with tempfile.TemporaryFile() as exported:
        for chunk in client.images.get(image).save(named=True):
            exported.write(chunk)
        size = exported.tell()
        exported.seek(0)
        bundle = io.BytesIO()
        with tarfile.open(fileobj=bundle, mode="w") as tar:
            info = tarfile.TarInfo("bascule-image.tar")
            info.size = size
            tar.addfile(info, exported)
    for container in containers:
        if not container.put_archive("/tmp", bundle.getvalue()):
            raise TargetError(f"cannot copy {image} into {container.name}")
        result = container.exec_run(
            ["k3s", "ctr", "-n", "k8s.io", "images", "import", "/tmp/bascule-image.tar"]
        )
        if result.exit_code != 0:
            output = result.output.decode(errors="replace")[-300:]
            raise TargetError(f"{container.name}: importing {image} failed: {output}")


def _k3s_server(k3s_container: Any, image: str, client_kw: Mapping[str, Any]) -> Any:
    """testcontainers' `K3SContainer`, made where its constructor works everywhere: it asks for
    the container's address before the container exists, which fails when this process runs in a
    container itself (testcontainers then wants the container's gateway). It only needs that
    address for ``K3S_URL``, which a server does not use (it joins nothing), and the kubeconfig
    names ``localhost`` as the server's TLS name whatever address it dials (`kubeconfig_for`)."""
    from testcontainers.core.config import ConnectionMode, testcontainers_config

    previous = testcontainers_config.connection_mode_override
    testcontainers_config.connection_mode_override = previous or ConnectionMode.docker_host
    try:
        server = k3s_container(image=image, docker_client_kw=dict(client_kw))
    finally:
        testcontainers_config.connection_mode_override = previous
    server.env.pop("K3S_URL", None)
    return server


def cluster_up(
    design: Design,
    directory: str | Path,
    *,
    image: str | None = None,
    context: str = DEFAULT_CONTEXT,
    namespace: str = "bascule",
    label_key: str = NODE_REGION_LABEL,
    load_images: Sequence[str] = (),
    pull: bool = False,
    environ: Mapping[str, str] | None = None,
    timeout: float = 240.0,
) -> KubeCluster:
    """Start a k3s cluster with one node per region of `design` and write its kubeconfig, target
    file and record into `directory` (see the module docstring). Raises `ClusterUnavailableError` when
    no engine or image is there — before starting anything — and `TargetError` when the cluster
    does not come up, after removing what was started."""
    env = os.environ if environ is None else environ
    image = image or env.get(IMAGE_ENV) or K3S_IMAGE
    root = Path(directory)
    if (root / STATE_FILE).exists():
        raise TargetError(f"a cluster is already recorded in {root}: bascule cluster down first")
    engine = check_engine([image, *load_images], environ=env, pull=pull)
    try:
        from testcontainers.community.k3s import K3SContainer
        from testcontainers.core.config import testcontainers_config
        from testcontainers.core.container import DockerContainer
    except ImportError as exc:
        raise ClusterUnavailableError(
            Missing.PACKAGE, "a throwaway cluster needs testcontainers: pip install 'bascule[k3s]'"
        ) from exc
    # The cluster must outlive this process (cluster down is another command): no reaper.
    testcontainers_config.ryuk_disabled = True
    regions = cluster_regions(design)
    names = {region: node_name(region) for region in regions}
    token = secrets.token_hex(16)
    client_kw = {"environment": {"DOCKER_HOST": engine.url}}
    root.mkdir(parents=True, exist_ok=True)
    started: list[Any] = []
    try:
        server = _k3s_server(K3SContainer, image, client_kw)
        server.with_command(f"server --disable traefik --node-name {names[regions[0]]}")
        server.with_env("K3S_TOKEN", token)
        server.with_kwargs(privileged=True, labels={_CONTAINER_LABEL: context})
        server.start()
        started.append(server)
        server_id = server.get_wrapped_container().id
        server_ip = server.get_docker_client().bridge_ip(server_id)
        for region in regions[1:]:
            agent = (
                DockerContainer(image, docker_client_kw=client_kw)
                .with_command(f"agent --node-name {names[region]}")
                .with_env("K3S_URL", f"https://{server_ip}:{_API_PORT}")
                .with_env("K3S_TOKEN", token)
                .with_tmpfs_mount("/run")
                .with_tmpfs_mount("/var/run")
                .with_volume_mapping("/sys/fs/cgroup", "/sys/fs/cgroup", "rw")
                .with_kwargs(privileged=True, labels={_CONTAINER_LABEL: context})
            )
            agent.start()
            started.append(agent)
        cluster = KubeCluster(
            directory=root,
            context=context,
            image=image,
            engine_url=engine.url,
            nodes=names,
            containers=tuple(str(c.get_wrapped_container().id) for c in started),
        )
        _record(cluster)
        _write_private(cluster.kubeconfig, kubeconfig_for(server.config_yaml(), context))
        target = cluster_target(
            design,
            context=context,
            kubeconfig=str(cluster.kubeconfig.resolve()),
            namespace=namespace,
            label_key=label_key,
        )
        cluster.target_file.write_text(yaml.safe_dump(target, sort_keys=False), encoding="utf-8")
        api = connect_contexts([context], cluster.kubeconfig)[context]
        try:
            _wait_for_nodes(api, list(names.values()), timeout)
            for region, node in names.items():
                api.patch(NODES, None, node, {"metadata": {"labels": {label_key: region_slug(region)}}})
        finally:
            api.close()
        client, _ = _client(engine.url)
        try:
            for extra in load_images:
                _load_image(client, extra, [c.get_wrapped_container() for c in started])
        finally:
            client.close()
    except BaseException as exc:
        for container in reversed(started):
            # Best effort: the error that brought us here is the one to report.
            with contextlib.suppress(Exception):
                container.stop()
        for leftover in (STATE_FILE, KUBECONFIG_FILE, TARGET_FILE):
            (root / leftover).unlink(missing_ok=True)
        if isinstance(exc, TargetError) or not isinstance(exc, Exception):
            raise
        # The engine's, the Docker SDK's and testcontainers' own errors, at the boundary.
        raise TargetError(f"the k3s cluster did not come up ({type(exc).__name__}): {exc}") from exc
    return cluster


def cluster_down(directory: str | Path, *, environ: Mapping[str, str] | None = None) -> list[str]:
    """Remove the containers of the cluster recorded in `directory` and its files. Returns the ids
    removed (those already gone are skipped). Raises `TargetError` when nothing is recorded there."""
    cluster = read_cluster(directory)
    env = os.environ if environ is None else environ
    url = env.get("DOCKER_HOST", "").strip() or cluster.engine_url
    client, _ = _client(url)
    docker = _docker()
    removed: list[str] = []
    try:
        for container_id in reversed(cluster.containers):
            try:
                client.containers.get(container_id).remove(force=True, v=True)
            except docker.errors.NotFound:
                continue
            except docker.errors.DockerException as exc:
                raise TargetError(f"cannot remove container {container_id[:12]}: {exc}") from exc
            removed.append(container_id)
    finally:
        client.close()
    for leftover in (STATE_FILE, KUBECONFIG_FILE, TARGET_FILE):
        (cluster.directory / leftover).unlink(missing_ok=True)
    return removed
