"""`bascule recover` for the Kubernetes target: a run SIGKILLed with faults in force — or in the
middle of applying one, its ledger record written and only some changes made — leaves a ledger
from which every object is restored; recovering twice does nothing more. Also the ledger's own
format: records round-trip, a torn last line is ignored, an unfinished ledger blocks a new run."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from kube_killed import run_killed
from kube_world import COREFILE, World, world
from typer.testing import CliRunner

from bascule.cli import app
from bascule.errors import TargetError
from bascule.faults import DnsAnswer
from bascule.targets.kubernetes.calls import coredns_block, corefile_with
from bascule.targets.kubernetes.ledger import (
    KUBE_LEDGER_FILE,
    Change,
    ChangeOp,
    FieldState,
    KubeClosed,
    KubeFault,
    KubeLedger,
    KubeRecovered,
    KubeReverted,
    KubeRun,
    ObjectRef,
    dump_kube_record,
    parse_kube_ledger,
    parse_kube_record,
)
from bascule.targets.kubernetes.recover import recover_kubernetes
from bascule.targets.kubernetes.resources import CONFIGMAPS, NODES, PVCS
from bascule.targets.kubernetes.target import KubernetesTarget
from bascule.targets.local.ledger import Owner

FAULTS = """
    (ControlPlane(), Selector(region="aws/us-east-1")),
    (RegionOutage(), Selector(region="aws/us-east-1")),
    (Partition(), Selector(link=("aws/eu-west-3", "scaleway/fr-par"))),
    (Dns(answer=DnsAnswer.NXDOMAIN), Selector(component="store", region="scaleway/fr-par")),
    (Refuse(), Selector(component="gateway", region="aws/eu-west-3")),
    (Latency(fixed=0.3), Selector(component="llm", region="scaleway/fr-par")),
"""


@pytest.fixture
def w(tmp_path: Path) -> Iterator[World]:
    with world(tmp_path) as found:
        yield found


def _run_child(w: World, run_dir: Path, kill_after: int | None) -> str:
    return run_killed(
        w.kubeconfig,
        run_dir,
        FAULTS,
        imports="ControlPlane, Dns, DnsAnswer, Partition, RegionOutage, Refuse, Latency",
        kill_after=kill_after,
        timeout=60,
    )


def _assert_restored(w: World, before: dict[str, dict[object, object]]) -> None:
    after = w.snapshot()
    for cluster, objects in before.items():
        assert not set(after[cluster]) - set(objects)
        missing = set(objects) - set(after[cluster])
        assert all(key[0] == "v1/pods" for key in missing), missing  # type: ignore[index]
        for key in set(objects) & set(after[cluster]):
            assert after[cluster][key] == objects[key], key
    assert w.created() == []


def test_recover_restores_every_object_after_a_sigkill(w: World, tmp_path: Path) -> None:
    before = w.snapshot()
    run_dir = tmp_path / "run"
    assert "all applied" in _run_child(w, run_dir, None)
    assert w.snapshot() != before
    # `bascule recover RUN_DIR`, as after a real crash: it opens clients from the kubeconfig and
    # contexts the ledger names.
    result = CliRunner().invoke(app, ["recover", str(run_dir)], env={"COLUMNS": "250"})
    assert result.exit_code == 0, result.output
    assert "Corefile restored" in result.output
    assert any("deleted" in line and "Pod" in line for line in result.output.splitlines())
    _assert_restored(w, before)
    again = recover_kubernetes(run_dir, w.apis)
    assert again.previously == "recovered" and again.restored == ()


@pytest.mark.parametrize("kill_after", [0, 3, 9])
def test_recover_restores_a_fault_killed_midway(w: World, tmp_path: Path, kill_after: int) -> None:
    before = w.snapshot()
    run_dir = tmp_path / "run"
    assert "killed mid-apply" in _run_child(w, run_dir, kill_after)
    report = recover_kubernetes(run_dir, w.apis)
    assert report.clean, report.lines()
    _assert_restored(w, before)


def test_recover_refuses_a_run_that_is_alive(w: World, tmp_path: Path) -> None:
    with (
        KubernetesTarget.start(w.mapping, w.apis, tmp_path / "run"),
        pytest.raises(TargetError, match="still alive"),
    ):
        recover_kubernetes(tmp_path / "run", w.apis)


# -- the ledger ----------------------------------------------------------------------------------------


DEAD = Owner(2**22 + 12345, 1)


def _records() -> list[object]:
    ref = ObjectRef("aws", NODES, None, "use1-a")
    field = FieldState(("spec", "unschedulable"), "set", False, None, True)
    change = Change(ChangeOp.PATCH, ref, (field,))
    created = Change(ChangeOp.CREATE, ObjectRef("aws", NODES, None, "n2"), body={"metadata": {"name": "n2"}})
    return [
        KubeRun(DEAD, "ab12cd", "kube-three", "/tmp/kubeconfig", ("aws", "scw"), 1.5),
        KubeFault("ab12cd/p0", "control-plane", 0, None, (change, created), DEAD, 2.0),
        KubeReverted("ab12cd/p0", DEAD, 3.0, "closing"),
        KubeClosed(4.0),
        KubeRecovered(5.0, "1 fault(s)"),
    ]


def test_records_round_trip() -> None:
    for record in _records():
        line = dump_kube_record(record)  # type: ignore[arg-type]
        assert "\n" not in line
        assert parse_kube_record(line) == record


def test_a_torn_last_line_is_counted_and_ignored() -> None:
    run, fault = _records()[:2]
    text = dump_kube_record(run) + "\n" + dump_kube_record(fault) + "\n" + dump_kube_record(fault)[:40]  # type: ignore[arg-type]
    state = parse_kube_ledger(text)
    assert state.damaged == 1 and len(state.active) == 1 and not state.finished


def test_an_unfinished_ledger_blocks_a_new_run_until_recovered(tmp_path: Path) -> None:
    path = tmp_path / KUBE_LEDGER_FILE
    run, fault = _records()[:2]
    path.write_text(dump_kube_record(run) + "\n" + dump_kube_record(fault) + "\n", encoding="utf-8")  # type: ignore[arg-type]
    with pytest.raises(TargetError, match="bascule recover"):
        KubeLedger.create(path, run_id="new", design="d", kubeconfig=None, contexts=("aws",))
    with path.open("a", encoding="utf-8") as handle:
        handle.write(json.dumps({"type": "recovered", "at": 9.0, "summary": ""}) + "\n")
    with KubeLedger.create(path, run_id="new", design="d", kubeconfig=None, contexts=("aws",)) as ledger:
        state = ledger.read()
    assert state.run is not None and state.run.run_id == "new" and state.applied == ()


@pytest.mark.parametrize("written_before_the_fix", [False, True])
def test_recover_restores_a_corefile_two_dns_faults_held(
    w: World, tmp_path: Path, written_before_the_fix: bool
) -> None:
    # A run killed with two dns overrides in force on the same Service; each record keeps the
    # original Corefile (a ledger written before the fix kept, for the second, the text the first
    # had made).
    zone = "store--aws-us-east-1.rag.svc.cluster.local"
    first = coredns_block((zone,), DnsAnswer.NXDOMAIN, "ab12cd", "p0")
    second = coredns_block((zone,), DnsAnswer.DROP, "ab12cd", "p1")
    ref = ObjectRef("aws", CONFIGMAPS, "kube-system", "coredns")
    second_before = COREFILE + first if written_before_the_fix else COREFILE
    records = [
        KubeRun(DEAD, "ab12cd", "kube-three", str(w.kubeconfig), ("aws", "scw"), 1.0),
        KubeFault(
            "p0",
            "dns",
            0,
            None,
            (
                Change(
                    ChangeOp.PATCH, ref, (FieldState(("data", "Corefile"), "append", True, COREFILE, first),)
                ),
            ),
            DEAD,
            2.0,
        ),
        KubeFault(
            "p1",
            "dns",
            1,
            None,
            (
                Change(
                    ChangeOp.PATCH,
                    ref,
                    (FieldState(("data", "Corefile"), "append", True, second_before, second),),
                ),
            ),
            DEAD,
            3.0,
        ),
    ]
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    lines = [dump_kube_record(r) for r in records]  # type: ignore[arg-type]
    (run_dir / KUBE_LEDGER_FILE).write_text("\n".join(lines) + "\n", encoding="utf-8")
    both = corefile_with(COREFILE, [first, second])
    assert both.count(f"{zone} {{") == 1
    w.apis["aws"].patch(CONFIGMAPS, "kube-system", "coredns", {"data": {"Corefile": both}})

    report = recover_kubernetes(run_dir, w.apis)
    assert report.clean, report.lines()
    cm = w.clusters["aws"].get("v1/configmaps", "kube-system", "coredns")
    assert cm is not None and cm["data"]["Corefile"].encode() == COREFILE.encode()


@pytest.mark.parametrize("held", [True, False])
def test_recover_finishes_a_data_loss_killed_between_its_claims_and_its_pods(
    w: World, tmp_path: Path, held: bool
) -> None:
    # A data-loss killed after deleting the store's claim, before its pod: a real API server keeps
    # the claim (``kubernetes.io/pvc-protection``) while the pod runs, and removes it — the data with
    # it — whenever that pod next goes. kmock has no finalizers: the claim is seeded as the real
    # server leaves it (on the real one: tests/test_kubernetes_statefulsets.py).
    aws = w.clusters["aws"]
    name, pod = "data-store-aws-us-east-1-0", "store-aws-us-east-1-0"
    claim = aws.get("v1/persistentvolumeclaims", "rag", name)
    assert claim is not None and aws.get("v1/pods", "rag", pod) is not None
    if held:
        claim["metadata"]["deletionTimestamp"] = "2026-01-01T00:00:00Z"
        claim["metadata"]["finalizers"] = ["kubernetes.io/pvc-protection"]
        aws.seed("v1/persistentvolumeclaims", claim)
    ref = ObjectRef("aws", PVCS, "rag", name)
    kept = {"metadata": {"name": name, "namespace": "rag", "uid": claim["metadata"]["uid"]}}
    records = [
        KubeRun(DEAD, "ab12cd", "kube-three", str(w.kubeconfig), ("aws", "scw"), 1.0),
        KubeFault(
            "p1",
            "data-loss",
            1,
            None,
            (Change(ChangeOp.DELETE, ref, body=kept, note="irreversible"),),
            DEAD,
            2.0,
        ),
    ]
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / KUBE_LEDGER_FILE).write_text(
        "".join(dump_kube_record(r) + "\n" for r in records), encoding="utf-8"
    )  # type: ignore[arg-type]

    report = recover_kubernetes(run_dir, w.apis)
    assert report.clean, report.lines()
    if held:
        # The pod deleted as the fault meant: its controller makes it again, on a new claim.
        assert aws.get("v1/pods", "rag", pod) is None
        (line,) = report.restored
        assert name in line and "deleted them too" in line and pod in line, line
    else:
        # A claim not marked for deletion is another claim (made again since): left alone.
        assert aws.get("v1/pods", "rag", pod) is not None and report.restored == ()
    assert any(name in line and "irreversible" in line for line in report.final)
