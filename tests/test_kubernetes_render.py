"""The reference stack rendered as Kubernetes manifests: every design of the library renders into
objects the Kubernetes schemas accept, each container's command line is one its service parses,
every upstream it names is a rendered Service selecting the callee's pods, and the labels are the
ones the fault adapters select by."""

from __future__ import annotations

import base64
import importlib
import re
import time
import tomllib
from pathlib import Path
from typing import Any

import kubernetes_validate  # type: ignore[import-untyped]
import pytest
import yaml
from kube_world import DESIGN as KUBE_DESIGN
from kube_world import TARGET as KUBE_TARGET

from bascule.model.design import Design
from bascule.model.loading import parse_design, read_design
from bascule.stack.wiring import read_wiring
from bascule.targets.kubernetes.k3s import K3S_IMAGE, cluster_target
from bascule.targets.kubernetes.manifests import CONTEXT_ANNOTATION, MANAGED_BY, object_context, render_yaml
from bascule.targets.kubernetes.mapping import KubeMapping, bind, parse_target
from bascule.targets.kubernetes.render import (
    DEFAULT_PORT,
    DESIGN_CONFIGMAP,
    DESIGN_DIGEST,
    DESIGN_PATH,
    RUN_AS_USER,
    SECRET_DIGEST,
    TOKEN_SECRET,
    UnrenderableError,
    render_manifests,
    unrenderable,
)

ROOT = Path(__file__).resolve().parent.parent
DESIGNS = sorted((ROOT / "designs").glob("*.yaml"))
IMAGE = "bascule-stack:0.1.0"
SECRET = "test-only-token-secret"
K3S_VERSION = re.match(r".*:v(\d+\.\d+)\.", K3S_IMAGE)
VERSIONS = sorted({kubernetes_validate.latest_version(), f"{K3S_VERSION[1]}.0" if K3S_VERSION else ""} - {""})
"""The newest schemas kubernetes-validate ships, and those of the Kubernetes the k3s image runs."""

Json = dict[str, Any]


def k3s_mapping(design: Design) -> KubeMapping:
    """The target file `bascule cluster up` writes for `design`: one context, a node per region."""
    text = yaml.safe_dump(cluster_target(design))
    return bind(parse_target(text, "target.yaml", design), design)


def two_clusters() -> tuple[Design, KubeMapping]:
    """The Kubernetes tests' world: three regions over two contexts, an identity service, a
    StatefulSet store."""
    design = parse_design(KUBE_DESIGN, "kube-three.yaml")
    return design, bind(parse_target(KUBE_TARGET, "target.yaml", design), design)


def of_kind(objects: list[Json], kind: str) -> list[Json]:
    return [o for o in objects if o["kind"] == kind]


def find(objects: list[Json], kind: str, name: str, namespace: str | None = None) -> Json:
    found = [
        o
        for o in objects
        if o["kind"] == kind
        and o["metadata"]["name"] == name
        and (namespace is None or o["metadata"].get("namespace") == namespace)
    ]
    assert len(found) == 1, (kind, name, namespace, len(found))
    return found[0]


def workloads(objects: list[Json]) -> list[Json]:
    return [o for o in objects if o["kind"] in ("Deployment", "StatefulSet")]


def container(workload: Json) -> Json:
    containers = workload["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1
    return containers[0]


@pytest.mark.parametrize("path", DESIGNS, ids=[p.stem for p in DESIGNS])
def test_every_design_renders_objects_the_kubernetes_schemas_accept(path: Path) -> None:
    design = read_design(path)
    # Every design of the library runs the reference stack, which can always be rendered.
    assert unrenderable(design) == [], path.name
    objects = render_manifests(design, k3s_mapping(design), image=IMAGE, namespace="rag", token_secret=SECRET)
    assert objects
    started = time.perf_counter()
    for version in VERSIONS:
        for obj in objects:
            # strict: an unknown field is an error, as a server's strict field validation makes it
            kubernetes_validate.validate(obj, version, strict=True)
    elapsed = time.perf_counter() - started
    print(
        f"{path.stem}: {len(objects)} objects valid for Kubernetes {', '.join(VERSIONS)} in {elapsed:.2f} s"
    )
    placed = sum(1 for spec in design.components.values() for p in spec.replicas.values() if p.ceiling > 0)
    identity = sum(1 for d in design.dependencies.values() if d.kind.value == "identity")
    assert len(workloads(objects)) == placed + identity
    assert len(of_kind(objects, "Service")) == placed + identity


def test_the_active_passive_sovereign_design_renders_what_it_places() -> None:
    design = read_design(ROOT / "designs" / "active-passive-sovereign.yaml")
    objects = render_manifests(design, k3s_mapping(design), image=IMAGE, namespace="rag", token_secret=SECRET)
    counts = {kind: len(of_kind(objects, kind)) for kind in {o["kind"] for o in objects}}
    # 4 components × 2 regions + the STS in us-east-1; one namespace, its Secret and design ConfigMap.
    assert counts == {"Namespace": 1, "Secret": 1, "ConfigMap": 1, "Service": 9, "Deployment": 9}
    gateway = find(objects, "Deployment", "gateway--aws-us-east-1")
    assert gateway["spec"]["replicas"] == 2
    assert gateway["spec"]["template"]["spec"]["nodeSelector"] == {
        "topology.kubernetes.io/region": "aws-us-east-1"
    }
    assert find(objects, "Deployment", "aws-sts--aws-us-east-1")["spec"]["replicas"] == 1


def _args(obj: Json) -> tuple[str, list[str], bool]:
    """(module, args with the pod's name filled in, whether the token secret is in its environment)."""
    c = container(obj)
    assert c["command"][:2] == ["python", "-m"]
    names = [e["name"] for e in c["env"]]
    args = [a.replace("$(POD_NAME)", "gateway--x-5d8f-abcde") for a in c["args"]]
    return c["command"][2], args, "BASCULE_TOKEN_SECRET" in names


@pytest.mark.parametrize("path", DESIGNS, ids=[p.stem for p in DESIGNS])
def test_each_command_line_is_one_its_service_accepts(path: Path) -> None:
    design = read_design(path)
    objects = render_manifests(design, k3s_mapping(design), image=IMAGE, namespace="rag", token_secret=SECRET)
    for obj in workloads(objects):
        module_name, args, has_secret = _args(obj)
        module = importlib.import_module(module_name)
        env = {"BASCULE_TOKEN_SECRET": SECRET} if has_secret else {}
        if module_name.endswith(".identity"):
            config = module.parse_args(args, environ=env)
            assert (config.host, config.port, config.secret) == ("0.0.0.0", 8080, SECRET)
            continue
        with pytest.MonkeyPatch.context() as mp:
            # read_wiring reads the token secret from the process environment, as the pod's does.
            mp.delenv("BASCULE_TOKEN_SECRET", raising=False)
            for key, value in env.items():
                mp.setenv(key, value)
            rest, wiring = read_wiring(args)
        config = module.parse_args(rest, environ={})
        assert (config.host, config.port) == ("0.0.0.0", 8080)
        assert wiring.net.dns_server is None, "names must resolve through the cluster's DNS"
        assert wiring.auth.enabled == has_secret, obj["metadata"]["name"]
        if module_name.endswith(".gateway"):
            assert config.design == DESIGN_PATH


def _service_for(objects: list[Json], host: str, port: int, caller_context: str) -> Json:
    """The rendered Service a URL's host names, in the caller's cluster or exported to it."""
    found = re.fullmatch(r"([a-z0-9-]+)\.([a-z0-9-]+)\.svc\.(cluster\.local|clusterset\.local)", host)
    assert found, host
    name, namespace, domain = found.groups()
    service = find(objects, "Service", name, namespace)
    assert service["spec"]["ports"][0]["port"] == port
    if domain == "cluster.local":
        assert object_context(service) == caller_context
    else:
        assert object_context(service) != caller_context
        export = find(objects, "ServiceExport", name, namespace)
        assert object_context(export) == object_context(service)
    return service


def _upstreams(args: list[str]) -> list[tuple[str, int]]:
    return [(h, int(p)) for h, p in re.findall(r"http://([^:/]+):(\d+)", " ".join(args))]


@pytest.mark.parametrize("shape", ["one-cluster", "two-clusters"])
def test_every_upstream_is_a_service_selecting_the_callees_pods(shape: str) -> None:
    if shape == "one-cluster":
        design = read_design(ROOT / "designs" / "hidden-dependency.yaml")
        mapping = k3s_mapping(design)
    else:
        design, mapping = two_clusters()
    objects = render_manifests(design, mapping, image=IMAGE, namespace="rag", token_secret=SECRET)
    pods = {
        (object_context(w), w["metadata"]["namespace"], w["metadata"]["name"]): w["spec"]["template"][
            "metadata"
        ]["labels"]
        for w in workloads(objects)
    }
    checked = 0
    for obj in workloads(objects):
        _, args, _ = _args(obj)
        for host, port in _upstreams(args):
            service = _service_for(objects, host, port, object_context(obj) or "")
            key = (object_context(service), service["metadata"]["namespace"], service["metadata"]["name"])
            selector = service["spec"]["selector"]
            assert selector.items() <= pods[key].items(), host
            # the host names the callee's region after '--', which tells a same-region call
            assert host.split(".")[0].rpartition("--")[2] == pods[key]["bascule.io/region"]
            # …and no other workload's pods
            others = [k for k, labels in pods.items() if k != key and k[:2] == key[:2]]
            assert all(not selector.items() <= pods[k].items() for k in others), host
            checked += 1
    assert checked > 10


def test_two_clusters_reach_each_other_through_exported_services() -> None:
    design, mapping = two_clusters()
    objects = render_manifests(design, mapping, image=IMAGE, namespace="rag", token_secret=SECRET)
    exports = {
        (object_context(o), o["metadata"]["namespace"], o["metadata"]["name"])
        for o in of_kind(objects, "ServiceExport")
    }
    # scw's gateways fail over to aws's retrievers, llms and stores; stores replicate both ways;
    # aws's gateways reach scw's.
    assert ("aws", "rag", "retriever--aws-us-east-1") in exports
    assert ("scw", "rag", "store--scaleway-fr-par") in exports
    assert ("aws", "rag", "store--aws-eu-west-3") in exports
    # us-east-1 and eu-west-3 share a cluster: between them, plain cluster DNS, no export needed
    # for the STS, which only us-east-1 relies on.
    assert ("aws", "identity", "aws-sts--aws-us-east-1") not in exports
    for export in of_kind(objects, "ServiceExport"):
        with pytest.raises(kubernetes_validate.SchemaNotFoundError):
            # Not a core kind: kubernetes-validate has no schema for it, so it is checked here.
            kubernetes_validate.validate(export, kubernetes_validate.latest_version(), strict=True)
        assert export["apiVersion"] == "multicluster.x-k8s.io/v1alpha1"
        assert set(export) == {"apiVersion", "kind", "metadata"}
    for obj in objects:
        if obj["kind"] != "ServiceExport":
            kubernetes_validate.validate(obj, kubernetes_validate.latest_version(), strict=True)


def test_workloads_carry_the_labels_the_fault_adapters_select_by() -> None:
    design, mapping = two_clusters()
    objects = render_manifests(design, mapping, image=IMAGE, namespace="rag", token_secret=SECRET)
    seen = 0
    for name in [*design.components, *design.dependencies]:
        workload = mapping.workload(name)
        assert workload is not None
        for region_id in design.region_map:
            if mapping.placed(name, region_id) == 0:
                continue
            slug = region_id.replace("/", "-")
            obj = find(objects, workload.kind.value, f"{name}--{slug}", workload.namespace)
            wanted = mapping.pod_labels(name, region_id)
            assert wanted.items() <= obj["metadata"]["labels"].items()
            assert wanted.items() <= obj["spec"]["template"]["metadata"]["labels"].items()
            assert obj["metadata"]["labels"][MANAGED_BY[0]] == MANAGED_BY[1]
            region = mapping.region(region_id)
            assert region is not None
            assert object_context(obj) == region.context
            assert obj["spec"]["template"]["spec"].get("nodeSelector", {}) == dict(region.nodes)
            seen += 1
    assert seen == 13  # 4 components in 3 regions, and the STS
    store = find(objects, "StatefulSet", "store--scaleway-fr-par", "rag")
    assert store["spec"]["serviceName"] == "store--scaleway-fr-par"
    sts = find(objects, "Deployment", "aws-sts--aws-us-east-1", "identity")
    assert container(sts)["command"] == ["python", "-m", "bascule.stack.identity"]
    # the secret goes where a pod reads it, in each cluster and namespace: the STS and us-east-1's services
    secrets = {
        (object_context(o), o["metadata"]["namespace"], o["metadata"]["name"])
        for o in of_kind(objects, "Secret")
    }
    assert secrets == {("aws", "identity", TOKEN_SECRET), ("aws", "rag", TOKEN_SECRET)}
    assert all(o["metadata"]["annotations"][CONTEXT_ANNOTATION] in ("aws", "scw") for o in objects)


def test_a_growing_region_gets_an_autoscaler_and_leaves_it_the_count() -> None:
    design = read_design(ROOT / "designs" / "pilot-light.yaml")
    objects = render_manifests(design, k3s_mapping(design), image=IMAGE, namespace="rag", token_secret=SECRET)
    hpas = of_kind(objects, "HorizontalPodAutoscaler")
    assert [h["metadata"]["name"] for h in hpas] == ["gateway--scaleway-fr-par"]
    spec = hpas[0]["spec"]
    assert (spec["minReplicas"], spec["maxReplicas"]) == (1, 3)
    assert spec["scaleTargetRef"] == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "name": "gateway--scaleway-fr-par",
    }
    standby = find(objects, "Deployment", "gateway--scaleway-fr-par")
    assert "replicas" not in standby["spec"]
    assert "--max-inflight" in container(standby)["args"]
    assert find(objects, "Deployment", "gateway--aws-us-east-1")["spec"]["replicas"] == 2


def test_the_token_secret_is_the_callers_and_only_where_needed() -> None:
    design = read_design(ROOT / "designs" / "active-active.yaml")
    mapping = k3s_mapping(design)
    with pytest.raises(ValueError, match="token_secret"):
        render_manifests(design, mapping, image=IMAGE, namespace="rag")
    objects = render_manifests(design, mapping, image=IMAGE, namespace="rag", token_secret=SECRET)
    (secret,) = of_kind(objects, "Secret")
    assert base64.b64decode(secret["data"]["token-secret"]).decode() == SECRET
    assert SECRET not in render_yaml([o for o in objects if o["kind"] != "Secret"])
    fr_par = find(objects, "Deployment", "retriever--scaleway-fr-par")
    assert all(e["name"] != "BASCULE_TOKEN_SECRET" for e in container(fr_par)["env"])

    sovereign = read_design(ROOT / "designs" / "sovereign-primary.yaml")
    plain = render_manifests(sovereign, k3s_mapping(sovereign), image=IMAGE, namespace="rag")
    assert not of_kind(plain, "Secret")


def test_the_design_configmap_is_the_design_the_gateways_read() -> None:
    design = read_design(ROOT / "designs" / "us-fallback.yaml")
    objects = render_manifests(design, k3s_mapping(design), image=IMAGE, namespace="rag", token_secret=SECRET)
    configmap = find(objects, "ConfigMap", DESIGN_CONFIGMAP)
    again = parse_design(configmap["data"]["design.yaml"], "design.yaml")
    assert again.model_dump() == design.model_dump()
    gateway = find(objects, "Deployment", "gateway--aws-us-west-2")
    mounts = {m["name"]: m["mountPath"] for m in container(gateway)["volumeMounts"]}
    volumes = {v["name"]: v for v in gateway["spec"]["template"]["spec"]["volumes"]}
    assert f"{mounts['design']}/design.yaml" == DESIGN_PATH
    assert volumes["design"]["configMap"]["name"] == DESIGN_CONFIGMAP


def test_containers_run_unprivileged_with_probes_on_the_services_endpoints() -> None:
    design = read_design(ROOT / "designs" / "single-region.yaml")
    objects = render_manifests(design, k3s_mapping(design), image=IMAGE, namespace="rag", token_secret=SECRET)
    for obj in workloads(objects):
        c = container(obj)
        assert c["readinessProbe"]["httpGet"]["path"] == "/readyz"
        assert c["livenessProbe"]["httpGet"]["path"] == "/healthz"
        assert c["securityContext"]["runAsNonRoot"] is True
        assert c["securityContext"]["readOnlyRootFilesystem"] is True
        assert c["image"] == IMAGE
        pod = obj["spec"]["template"]["spec"]
        assert pod["automountServiceAccountToken"] is False
        assert pod["enableServiceLinks"] is False


def test_the_yaml_reads_back_as_the_objects_in_order() -> None:
    design = read_design(ROOT / "designs" / "active-passive-sovereign.yaml")
    mapping = k3s_mapping(design)
    objects = render_manifests(design, mapping, image=IMAGE, namespace="rag", token_secret=SECRET)
    text = render_yaml(objects)
    assert list(yaml.safe_load_all(text)) == objects
    assert "design.yaml: |" in text
    assert render_manifests(design, mapping, image=IMAGE, namespace="rag", token_secret=SECRET) == objects
    kinds = [o["kind"] for o in objects]
    assert (
        kinds.index("Namespace") < kinds.index("Secret") < kinds.index("Service") < kinds.index("Deployment")
    )


def test_own_services_are_refused_with_the_reason() -> None:
    design = read_design(ROOT / "examples" / "own-service" / "design.yaml")
    reasons = unrenderable(design)
    assert reasons and all("own service" in r for r in reasons)
    target = yaml.safe_dump(cluster_target(design))
    mapping = bind(parse_target(target, "target.yaml", design), design)
    with pytest.raises(UnrenderableError, match="command:"):
        render_manifests(design, mapping, image=IMAGE, namespace="rag")


def test_protected_namespaces_and_unmapped_dependency_regions_are_refused() -> None:
    design, _ = two_clusters()
    target = yaml.safe_load(KUBE_TARGET)
    target["components"]["llm"]["namespace"] = "payments"
    mapping = bind(parse_target(yaml.safe_dump(target), "target.yaml", design), design)
    with pytest.raises(UnrenderableError, match="payments"):
        render_manifests(design, mapping, image=IMAGE, namespace="rag", token_secret=SECRET)
    target["components"]["llm"]["namespace"] = "kube-system"
    mapping = bind(parse_target(yaml.safe_dump(target), "target.yaml", design), design)
    with pytest.raises(UnrenderableError, match="kube-system"):
        render_manifests(design, mapping, image=IMAGE, namespace="rag", token_secret=SECRET)

    outside = parse_design(
        KUBE_DESIGN.replace(
            "aws-sts: {kind: identity, region: aws/us-east-1}",
            "aws-sts: {kind: identity, region: aws/us-west-2}",
        ),
        "outside.yaml",
    )
    mapping = bind(parse_target(KUBE_TARGET, "target.yaml", outside), outside)
    with pytest.raises(UnrenderableError, match="aws/us-west-2, which the target file does not map"):
        render_manifests(outside, mapping, image=IMAGE, namespace="rag", token_secret=SECRET)


def test_bad_arguments_are_refused() -> None:
    design, mapping = two_clusters()
    with pytest.raises(ValueError, match="image"):
        render_manifests(design, mapping, image=" ", namespace="rag", token_secret=SECRET)
    with pytest.raises(ValueError, match="namespace"):
        render_manifests(design, mapping, image=IMAGE, namespace="Not_A_Namespace", token_secret=SECRET)
    other = read_design(ROOT / "designs" / "single-region.yaml")
    with pytest.raises(ValueError, match="bound to design"):
        render_manifests(other, mapping, image=IMAGE, namespace="rag", token_secret=SECRET)


def _instructions(text: str) -> list[tuple[str, str]]:
    """A Dockerfile's instructions, continuation lines joined and comments dropped."""
    out: list[tuple[str, str]] = []
    pending = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        joined = (pending + line).strip()
        pending = ""
        keyword, _, rest = joined.partition(" ")
        out.append((keyword.upper(), rest.strip()))
    assert not pending, "a continuation line runs off the end"
    return out


def test_the_dockerfile_builds_the_image_the_manifests_run() -> None:
    dockerfile = ROOT / "deploy" / "Dockerfile"
    steps = _instructions(dockerfile.read_text(encoding="utf-8"))
    known = {"FROM", "WORKDIR", "COPY", "RUN", "ENV", "USER", "EXPOSE", "CMD", "ARG", "LABEL"}
    assert {k for k, _ in steps} <= known, {k for k, _ in steps} - known
    stages = [rest for k, rest in steps if k == "FROM"]
    assert stages and all(s.split()[0] == "python:3.11-slim" for s in stages)
    ignored = (ROOT / "deploy" / "Dockerfile.dockerignore").read_text(encoding="utf-8").split()
    for keyword, rest in steps:
        if keyword != "COPY" or rest.startswith("--from="):
            continue
        *sources, _ = rest.split()
        for source in sources:
            # the build context is the repository root
            assert (ROOT / source).exists(), f"COPY {source}: no such file in the repository"
            assert source not in ignored
    copied = {
        s for k, rest in steps if k == "COPY" and not rest.startswith("--from=") for s in rest.split()[:-1]
    }
    # what hatchling reads: the README (project.readme) and the version's file
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    assert "pyproject.toml" in copied and project["project"]["readme"] in copied
    assert project["tool"]["hatch"]["version"]["path"].split("/")[0] in copied
    # the running stage: unprivileged, as the manifests say, serving the port they probe
    final = steps[[i for i, (k, _) in enumerate(steps) if k == "FROM"][-1] :]
    users = [rest for k, rest in final if k == "USER"]
    assert users and users[-1].split(":")[0] == str(RUN_AS_USER)
    assert [rest for k, rest in final if k == "EXPOSE"] == [str(DEFAULT_PORT)]
    run = " ".join(rest for k, rest in final if k == "RUN")
    assert "--no-index" in run, "the running stage installs from the built wheels, not from an index"
    # every module the manifests start (`python -m`) is in the package the image installs
    design = read_design(ROOT / "designs" / "hidden-dependency.yaml")
    objects = render_manifests(design, k3s_mapping(design), image=IMAGE, namespace="rag", token_secret=SECRET)
    for module in {container(o)["command"][2] for o in workloads(objects)}:
        path = ROOT / module.replace(".", "/")
        assert path.with_suffix(".py").is_file() or (path / "__main__.py").is_file(), module


def test_a_double_dash_in_a_name_is_refused_since_it_separates_component_and_region() -> None:
    design = parse_design(
        """
id: dashes
regions:
  - {id: acme-/par, jurisdiction: EU, sovereignty: sovereign}
components:
  gateway: {replicas: {acme-/par: 1}}
""",
        "dashes.yaml",
    )
    (reason,) = unrenderable(design)
    assert "'acme--par'" in reason


def test_a_new_design_or_secret_rolls_the_pods_that_read_it() -> None:
    design = read_design(ROOT / "designs" / "active-passive-sovereign.yaml")
    mapping = k3s_mapping(design)
    before = render_manifests(design, mapping, image=IMAGE, namespace="rag", token_secret=SECRET)
    after = render_manifests(design, mapping, image=IMAGE, namespace="rag", token_secret=SECRET + "-rotated")

    def templates(objects: list[Json]) -> dict[str, Json]:
        return {o["metadata"]["name"]: o["spec"]["template"]["metadata"] for o in workloads(objects)}

    old, new = templates(before), templates(after)
    rolled = sorted(name for name in old if old[name] != new[name])
    users = sorted(o["metadata"]["name"] for o in workloads(before) if _args(o)[2])
    assert rolled == users
    assert "retriever--scaleway-fr-par" not in rolled  # fr-par relies on no identity service
    assert all(SECRET_DIGEST in new[name]["annotations"] for name in rolled)

    changed = parse_design(
        (ROOT / "designs" / "active-passive-sovereign.yaml").read_text().replace("lag: 1s", "lag: 2s"),
        "d.yaml",
    )
    again = templates(
        render_manifests(changed, k3s_mapping(changed), image=IMAGE, namespace="rag", token_secret=SECRET)
    )
    rolled = sorted(name for name in old if old[name] != again[name])
    assert rolled == ["gateway--aws-us-east-1", "gateway--scaleway-fr-par"]
    assert all(
        again[name]["annotations"][DESIGN_DIGEST] != old[name]["annotations"][DESIGN_DIGEST]
        for name in rolled
    )


def test_a_rendered_service_name_tells_a_same_region_call_so_that_it_carries_a_token() -> None:
    from bascule.stack.wiring import _callee_region_slug

    assert _callee_region_slug("retriever.aws-us-east-1.bascule.internal") == "aws-us-east-1"
    assert _callee_region_slug("retriever--aws-us-east-1.rag.svc.cluster.local") == "aws-us-east-1"
    assert _callee_region_slug("store--scaleway-fr-par.rag.svc.clusterset.local") == "scaleway-fr-par"
    assert _callee_region_slug("api.example.com") is None
    assert _callee_region_slug("bascule.internal") is None
