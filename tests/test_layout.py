"""The pure stack layout: processes, routes and command lines for a design."""

from __future__ import annotations

from pathlib import Path

from bascule.model.loading import read_design
from bascule.model.topology import Endpoint, LinkPurpose
from bascule.stack.layout import ProcessKind, layout, max_class_for, replica_argv

ROOT = Path(__file__).resolve().parent.parent
APS = read_design(ROOT / "designs" / "active-passive-sovereign.yaml")
US = read_design(ROOT / "designs" / "us-fallback.yaml")


def _argv(design_name: str, replica_name: str) -> list[str]:
    design = read_design(ROOT / "designs" / f"{design_name}.yaml")
    stack = layout(design)
    ports = {r.name: 40000 + i for i, r in enumerate(stack.routes)}
    (replica,) = [r for r in stack.replicas if r.name == replica_name]
    return replica_argv(
        design,
        stack,
        replica,
        design_path="d.yaml",
        route_ports=ports,
        dns_server=("127.0.0.1", 53),
        python="py",
    )


def test_one_process_per_replica_and_identity_service() -> None:
    stack = layout(APS)
    kinds = [r.kind for r in stack.replicas]
    assert kinds.count(ProcessKind.GATEWAY) == 4 and kinds.count(ProcessKind.IDENTITY) == 1
    assert len(stack.replicas) == 11
    assert len({r.name for r in stack.replicas}) == 11


def test_routes_are_per_hop_so_a_fault_can_cut_one_link() -> None:
    stack = layout(APS)
    aws_gw = Endpoint("gateway", "aws/us-east-1")
    retrieve = stack.routes_from(aws_gw, LinkPurpose.RETRIEVE)
    assert {r.hop.target.region for r in retrieve} == {"aws/us-east-1", "scaleway/fr-par"}
    assert len({r.name for r in stack.routes}) == len(stack.routes)
    assert {r.hop.target.region for r in stack.ingress()} == {"aws/us-east-1", "scaleway/fr-par"}
    replication = [r for r in stack.routes if r.hop.purpose is LinkPurpose.REPLICATE]
    assert len(replication) == 2


def test_store_max_class_follows_sovereignty_unless_the_guard_is_off() -> None:
    assert max_class_for(APS, "aws/us-east-1") == "internal"
    assert max_class_for(APS, "scaleway/fr-par") == "confidential"
    assert max_class_for(US, "aws/us-west-2") == "confidential"


def test_command_lines_wire_routes_names_and_tokens() -> None:
    gateway = " ".join(_argv("active-passive-sovereign", "gateway-aws-us-east-1-0"))
    assert "-m bascule.stack.gateway" in gateway and "--design d.yaml" in gateway
    assert "--retriever scaleway/fr-par=http://retriever.scaleway-fr-par.bascule.internal:" in gateway
    assert "--identity-url http://aws-sts.aws-us-east-1.bascule.internal:" in gateway
    standby = " ".join(_argv("active-passive-sovereign", "store-scaleway-fr-par-0"))
    assert "--identity-url" not in standby and "--max-class confidential" in standby
    assert "--peer http://store.aws-us-east-1.bascule.internal:" in standby
    hidden = " ".join(_argv("hidden-dependency", "retriever-scaleway-fr-par-0"))
    assert "--identity-url http://aws-sts.aws-us-east-1.bascule.internal:" in hidden
    llm = _argv("active-passive-sovereign", "llm-scaleway-fr-par-0")
    assert llm[llm.index("--model") + 1] == "mistral-small-latest"
    assert "--token-secret" not in " ".join(gateway)


def test_a_pilot_light_region_lays_out_its_reserves_and_gives_gateways_their_slots() -> None:
    design = read_design(ROOT / "designs" / "pilot-light.yaml")
    stack = layout(design)
    reserves = stack.reserves("scaleway/fr-par")
    assert [r.name for r in reserves] == ["gateway-scaleway-fr-par-1", "gateway-scaleway-fr-par-2"]
    assert not stack.reserves("aws/us-east-1")
    running = [r for r in stack.replicas if r.kind is ProcessKind.GATEWAY and not r.reserve]
    assert len(running) == 3
    argv = _argv("pilot-light", "gateway-scaleway-fr-par-2")
    assert argv[argv.index("--max-inflight") + 1] == "9"
    assert "--max-inflight" not in _argv("active-passive-sovereign", "gateway-scaleway-fr-par-0")
