"""The Kubernetes verbs: ``bascule render kubernetes`` (manifests for the reference stack),
``bascule deploy`` (apply them to the mapped clusters) and ``bascule cluster up|down`` (a throwaway
k3s cluster for CI). The work is in `bascule.targets.kubernetes` (render is pure; deploy and the
cluster make the requests); the official client is imported only when one of these verbs runs.
"""

from __future__ import annotations

import base64
import secrets
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from bascule.errors import ScenarioError, TargetError
from bascule.exit_codes import ExitCode
from bascule.model.loading import read_design

__all__ = ["cluster_app", "deploy_command", "render_app"]

render_app = typer.Typer(help="Render what runs the reference stack on a platform.", no_args_is_help=True)
cluster_app = typer.Typer(
    help="A throwaway Kubernetes cluster (k3s in containers) for CI.", no_args_is_help=True
)
out = Console()
err = Console(stderr=True)


def _fail(message: str, code: ExitCode) -> typer.Exit:
    err.print(f"[red]error[/red] {message}", highlight=False, soft_wrap=True)
    return typer.Exit(code)


def _existing_secret(directory: Path) -> str | None:
    """The identity token secret of an earlier render into `directory`, so that a new render does
    not change it (which would restart every pod that reads it)."""
    from bascule.targets.kubernetes.deploy import read_manifests
    from bascule.targets.kubernetes.render import TOKEN_SECRET, TOKEN_SECRET_KEY

    for path in sorted(directory.glob("*.secrets.yaml")):
        for obj in read_manifests(path):
            if obj.get("kind") == "Secret" and (obj.get("metadata") or {}).get("name") == TOKEN_SECRET:
                value = (obj.get("data") or {}).get(TOKEN_SECRET_KEY)
                if isinstance(value, str):
                    return base64.b64decode(value).decode("utf-8")
    return None


@render_app.command("kubernetes")
def render_kubernetes(
    design: Annotated[Path, typer.Option("--design", "-d", help="The design file.")],
    target_file: Annotated[Path, typer.Option("--target-file", help="The target file (docs/kubernetes.md).")],
    out_dir: Annotated[Path, typer.Option("--out", help="Where to write the manifests.")],
    image: Annotated[str, typer.Option(help="The stack image (deploy/Dockerfile), as the clusters pull it.")],
    namespace: Annotated[str, typer.Option(help="The namespace the stack runs in.")] = "bascule",
    cluster_domain: Annotated[str, typer.Option(help="The clusters' DNS domain.")] = "cluster.local",
) -> None:
    """Write the manifests that run a design's reference stack on the mapped clusters: for each
    component and region a Deployment pinned to the region's nodes and a Service, the design as a
    ConfigMap, and the identity token secret (kept from an earlier render into the same directory,
    in <context>.secrets.yaml, mode 0600). Every object validates against the Kubernetes schemas.

    [b]Example[/b]: bascule render kubernetes -d designs/active-passive-sovereign.yaml
      --target-file kube.yaml --out deploy/out --image registry.example.com/bascule:0.1.0
    """
    from bascule.targets.kubernetes.deploy import write_manifests
    from bascule.targets.kubernetes.mapping import bind, read_target
    from bascule.targets.kubernetes.render import render_manifests

    try:
        loaded = read_design(design)
        mapping = bind(read_target(target_file, loaded), loaded)
        secret = _existing_secret(out_dir) if out_dir.is_dir() else None
        manifests = render_manifests(
            loaded,
            mapping,
            image=image,
            namespace=namespace,
            token_secret=secret or secrets.token_urlsafe(32),
            cluster_domain=cluster_domain,
        )
        written = write_manifests(manifests, out_dir)
    except ScenarioError as exc:
        raise _fail(str(exc), ExitCode.INVALID_INPUT) from exc
    except (TargetError, ValueError) as exc:
        raise _fail(str(exc), ExitCode.INVALID_INPUT) from exc
    out.print(f"{len(manifests)} objects → " + ", ".join(str(p) for p in written), highlight=False)


def deploy_command(
    directory: Annotated[
        Path, typer.Argument(help="What `bascule render kubernetes` wrote.", show_default=False)
    ],
    target_file: Annotated[Path, typer.Option("--target-file", help="The target file (docs/kubernetes.md).")],
    kubeconfig: Annotated[
        Path | None, typer.Option(help="The kubeconfig (default: the target file's).")
    ] = None,
    confirm: Annotated[
        list[str] | None,
        typer.Option("--confirm", help="A context on another machine you mean to deploy to (repeat)."),
    ] = None,
) -> None:
    """Create or update the rendered objects in their clusters: listed contexts only, protected
    namespaces refused, clusters off this machine only with --confirm (or BASCULE_CONFIRM_CONTEXTS),
    and never an object bascule did not create. Deploying twice changes nothing.

    Exit codes: 0 deployed, 2 invalid input or refused, 4 a cluster failed.
    """
    from bascule.targets.kubernetes.cluster import connected
    from bascule.targets.kubernetes.deploy import deploy, read_manifests, render_deploy_report
    from bascule.targets.kubernetes.mapping import read_target

    try:
        target = read_target(target_file)
        manifests = [obj for path in sorted(directory.glob("*.yaml")) for obj in read_manifests(path)]
        if not manifests:
            raise _fail(
                f"no manifests in {directory}: run `bascule render kubernetes` first", ExitCode.INVALID_INPUT
            )
        with connected(target, kubeconfig) as apis:
            report = deploy(manifests, apis, target=target, confirm=tuple(confirm or ()))
    except ScenarioError as exc:
        raise _fail(str(exc), ExitCode.INVALID_INPUT) from exc
    except TargetError as exc:
        raise _fail(str(exc), ExitCode.TARGET_ERROR) from exc
    out.print(render_deploy_report(report), highlight=False, markup=False)


@cluster_app.command("up")
def cluster_up_command(
    design: Annotated[Path, typer.Option("--design", "-d", help="The design: one node per region.")],
    directory: Annotated[Path, typer.Option("--dir", help="Where the kubeconfig and target file go.")],
    image: Annotated[str | None, typer.Option(help="The k3s image (default: the pinned one).")] = None,
    load_image: Annotated[
        list[str] | None, typer.Option("--load-image", help="A local image to load into the nodes (repeat).")
    ] = None,
    pull: Annotated[bool, typer.Option(help="Pull the k3s image if it is missing.")] = False,
) -> None:
    """Start k3s in containers (testcontainers), one node per region of the design labelled with
    its region, and write a kubeconfig, a target file and cluster.json into --dir. Needs a
    container engine (Docker, or Podman's service) with the k3s image.

    Exit codes: 0 up, 2 invalid input, 4 no engine, no image, or the cluster did not come up.
    """
    from bascule.targets.kubernetes.k3s import cluster_up

    try:
        cluster = cluster_up(
            read_design(design), directory, image=image, load_images=tuple(load_image or ()), pull=pull
        )
    except ScenarioError as exc:
        raise _fail(str(exc), ExitCode.INVALID_INPUT) from exc
    except TargetError as exc:
        raise _fail(str(exc), ExitCode.TARGET_ERROR) from exc
    files = f"kubeconfig {cluster.kubeconfig}, target file {cluster.target_file}"
    out.print(f"k3s up ({len(cluster.nodes)} nodes): {files}", highlight=False)


@cluster_app.command("down")
def cluster_down_command(
    directory: Annotated[Path, typer.Option("--dir", help="What `bascule cluster up` wrote.")],
) -> None:
    """Remove the containers of a cluster `bascule cluster up` started, and its files."""
    from bascule.targets.kubernetes.k3s import cluster_down

    try:
        removed = cluster_down(directory)
    except TargetError as exc:
        raise _fail(str(exc), ExitCode.TARGET_ERROR) from exc
    for line in removed:
        out.print(line, highlight=False)
