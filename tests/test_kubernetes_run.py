"""`bascule run --target kubernetes`: the AWS 2025-10-20 replay against two emulated clusters.

The emulators store objects but run nothing (no controllers, no pods that serve), so the service
the probes and load talk to is the reference stack of the same design running on this machine —
its URLs are the target file's `entries`, as a real cluster's ingresses would be. The faults go to
the clusters through the Kubernetes API; the journal must record every request bascule made, and
every object must be back as it was once the run is over.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from kube_world import DESIGN, TARGET, world

from bascule.ci.results import run_scored
from bascule.journal import read_journal
from bascule.model.loading import parse_design
from bascule.runner.run import RunOptions
from bascule.targets.local.stack import LocalStack
from bascule.targets.registry import choose

ROOT = Path(__file__).resolve().parent.parent
AWS_2025 = ROOT / "scenarios" / "incidents" / "aws-us-east-1-2025-10-20.yaml"


def _target_with_entries(entries: dict[str, str]) -> str:
    lines = ["entries:"] + [f"  {region}: {url}" for region, url in entries.items()]
    return TARGET + "\n".join(lines) + "\n"


@pytest.mark.slow
def test_the_aws_replay_runs_against_emulated_clusters_and_journals_every_request(tmp_path: Path) -> None:
    design_path = tmp_path / "design.yaml"
    design_path.write_text(DESIGN)
    stack = LocalStack.start(parse_design(DESIGN), design_path, tmp_path / "service")
    try:
        target_file = tmp_path / "target.yaml"
        target_file.write_text(_target_with_entries(stack.entries()))
        with world(tmp_path) as w:
            before = w.snapshot()
            seen_before = {name: len(c.requests()) for name, c in w.clusters.items()}
            outcome = run_scored(
                RunOptions(
                    scenario=AWS_2025,
                    design=design_path,
                    out=tmp_path / "run",
                    target=choose(
                        "kubernetes",
                        # kmock's clusters have no kube-system namespace: no identity to remember.
                        {"target_file": target_file, "kubeconfig": w.kubeconfig, "confirm": ("aws", "scw")},
                    ),
                    quiet=True,
                )
            )
            made = sum(len(c.requests()) - seen_before[name] for name, c in w.clusters.items())
            after = w.snapshot()
            created = w.created()
    finally:
        stack.stop()
    assert outcome.exit_code in (0, 1), outcome.reason  # completed (the score is not the point here)
    records = list(read_journal(outcome.run_dir / "journal.jsonl"))
    (started,) = [r for r in records if r["type"] == "target-started"]
    assert started["target"] == "kubernetes" and set(started["contexts"]) == {"aws", "scw"}
    journaled = [call for r in records for call in r.get("api_calls", [])]
    assert len(journaled) == made, "every request the emulators saw is in the journal"
    applied = [r for r in records if r["type"] == "fault-applied"]
    assert applied and all(r["effects"] for r in applied)
    assert any(call[0] in ("POST", "PATCH", "DELETE") for r in applied for call in r["api_calls"])
    # Everything is back: only pods are gone (their controllers would recreate them).
    for cluster, objects in before.items():
        assert not set(after[cluster]) - set(objects)
        for key in set(objects) & set(after[cluster]):
            assert after[cluster][key] == objects[key], key
        assert all(key[0] == "v1/pods" for key in set(objects) - set(after[cluster]))
    assert created == []
    result = json.loads((outcome.run_dir / "result.json").read_text())
    assert result["run"]["design"]["id"] == "kube-three"


def test_a_cluster_on_loopback_needs_confirm_too(tmp_path: Path) -> None:
    # A loopback address is not "this machine": kubectl proxy or an SSH tunnel may be there. kmock's
    # clusters answer on 127.0.0.1 and have no kube-system namespace to be known by: the run
    # refuses before its ledger until they are confirmed.
    design_path = tmp_path / "design.yaml"
    design_path.write_text(DESIGN)
    target_file = tmp_path / "target.yaml"
    target_file.write_text(_target_with_entries({"scaleway/fr-par": "http://127.0.0.1:9"}))
    with world(tmp_path) as w:
        options = RunOptions(
            scenario=AWS_2025,
            design=design_path,
            out=tmp_path / "run",
            target=choose("kubernetes", {"target_file": target_file, "kubeconfig": w.kubeconfig}),
            quiet=True,
        )
        outcome = run_scored(options)
    assert outcome.exit_code == 2
    assert "--confirm aws --confirm scw" in outcome.reason
    assert not (outcome.run_dir / "kubernetes-ledger.jsonl").exists()
