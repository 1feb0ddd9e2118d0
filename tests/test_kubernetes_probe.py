"""The ``kubernetes-ready`` probe: ready replicas of each mapped workload per region, read from the
emulated clusters, and how a crash shows in it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from kube_world import touch_of, world

from bascule.faults import Crash
from bascule.model.selector import Selector
from bascule.plan.model import Action, ActionOp
from bascule.targets.kubernetes.cluster import connected
from bascule.targets.kubernetes.probe import Readiness, count_ready, read_readiness
from bascule.targets.kubernetes.target import KubernetesTarget


def test_every_placed_workload_is_counted_in_its_region(tmp_path: Path) -> None:
    with world(tmp_path) as w:
        found = read_readiness(w.mapping, w.apis)
        assert len(found) == 4 * 3 + 1
        assert all(r.ok and r.ready == r.pods == r.expected for r in found)
        by_key = {(r.component, r.region): r for r in found}
        assert by_key[("gateway", "aws/us-east-1")] == Readiness("gateway", "aws/us-east-1", "aws", 2, 2, 2)
        assert by_key[("aws-sts", "aws/us-east-1")].ready == 1

        crash = Crash()
        action = Action(0.0, ActionOp.APPLY, 0, crash)
        with KubernetesTarget.start(w.mapping, w.apis, tmp_path / "run") as target:
            target.apply(action, touch_of(crash, Selector(component="gateway", region="aws/us-east-1")))
            after = {(r.component, r.region): r for r in read_readiness(w.mapping, w.apis)}
        assert after[("gateway", "aws/us-east-1")].ready == 0 and not after[("gateway", "aws/us-east-1")].ok
        assert after[("gateway", "aws/eu-west-3")].ok
        with connected(w.mapping.target, w.kubeconfig) as apis:
            assert read_readiness(w.mapping, apis) == tuple(after[k] for k in sorted(after))


def test_count_ready_skips_pods_being_deleted_and_off_the_regions_nodes() -> None:
    ready = {"type": "Ready", "status": "True"}
    pods: list[dict[str, Any]] = [
        {"metadata": {"name": "a"}, "spec": {"nodeName": "n1"}, "status": {"conditions": [ready]}},
        {
            "metadata": {"name": "b"},
            "spec": {"nodeName": "n1"},
            "status": {"conditions": [{"type": "Ready", "status": "False"}]},
        },
        {
            "metadata": {"name": "c", "deletionTimestamp": "x"},
            "spec": {"nodeName": "n1"},
            "status": {"conditions": [ready]},
        },
        {"metadata": {"name": "d"}, "spec": {"nodeName": "n2"}, "status": {"conditions": [ready]}},
        {"metadata": {"name": "e"}, "spec": {}, "status": {}},
    ]
    assert count_ready(pods, {"n1"}) == (1, 2)
    assert count_ready(pods, None) == (2, 4)


def test_the_probe_kind_holds_while_workloads_are_ready_and_names_what_is_not(tmp_path: Path) -> None:
    import asyncio

    import httpx
    from kube_world import DESIGN, TARGET

    from bascule.model.loading import parse_design
    from bascule.model.probes import KubernetesReadyProbe
    from bascule.probes.base import ProbeContext, make_probe

    target_file = tmp_path / "target.yaml"
    target_file.write_text(TARGET)
    context = ProbeContext(parse_design(DESIGN))

    async def check(spec: KubernetesReadyProbe) -> tuple[bool, str | None]:
        probe = make_probe(spec, context)
        async with httpx.AsyncClient() as client:
            try:
                sample = await probe.sample(client, 0.0)
            finally:
                await probe.finish(client, context)
        return sample.ok, sample.error

    with world(tmp_path) as w:
        spec = KubernetesReadyProbe(target_file=str(target_file), kubeconfig=str(w.kubeconfig))
        assert asyncio.run(check(spec)) == (True, None)
        crash = Crash()
        with KubernetesTarget.start(w.mapping, w.apis, tmp_path / "run") as target:
            target.apply(
                Action(0.0, ActionOp.APPLY, 0, crash),
                touch_of(crash, Selector(component="gateway", region="aws/us-east-1")),
            )
            ok, error = asyncio.run(check(spec))
            assert not ok and error == "gateway in aws/us-east-1: 0 of 2 ready"
            only_par = spec.model_copy(update={"regions": ("scaleway/fr-par",)})
            assert asyncio.run(check(only_par)) == (True, None)
    missing = KubernetesReadyProbe(target_file=str(tmp_path / "nowhere.yaml"))
    ok, error = asyncio.run(check(missing))
    assert not ok and error is not None and "nowhere.yaml" in error
