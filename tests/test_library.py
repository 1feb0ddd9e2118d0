"""The scenario and design library: every file validates and plans against every design, the
local target can carry out every phase, each incident cites its source and stays within 90 s,
and each incident replay runs end to end on the local target (slow)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from bascule.faults import FAULT_KINDS
from bascule.model.loading import read_design, read_scenario, scenario_design_path
from bascule.plan import plan
from bascule.targets.local.target import check_plan

ROOT = Path(__file__).resolve().parent.parent
DESIGNS = sorted((ROOT / "designs").glob("*.yaml"))
INCIDENTS = sorted((ROOT / "scenarios" / "incidents").glob("*.yaml"))
FAULTS = sorted((ROOT / "scenarios" / "faults").glob("*.yaml"))
APS = ROOT / "designs" / "active-passive-sovereign.yaml"

EXPECTED_INCIDENTS = {
    "aws-us-east-1-2025-10-20",
    "aws-us-east-1-2021-12-07",
    "ovhcloud-sbg-2021-03-10",
    "gcp-2025-06-12",
    "cloudflare-2025-11-18",
    "azure-frontdoor-2025-10-29",
    "openai-2024-12-11",
    "anthropic-2025-08-quality",
}
EXPECTED_DESIGNS = {
    "single-region",
    "active-passive-sovereign",
    "active-active",
    "sovereign-primary",
    "us-fallback",
    "hidden-dependency",
    "gcp-multi-region",
    "pilot-light",
    "canary-failover",
}


def test_the_library_holds_what_it_promises() -> None:
    assert {read_scenario(p).id for p in INCIDENTS} == EXPECTED_INCIDENTS
    assert {read_design(p).id for p in DESIGNS} >= EXPECTED_DESIGNS
    assert {p.stem for p in FAULTS} == set(FAULT_KINDS), "one scenario per fault kind"


@pytest.mark.parametrize("path", DESIGNS, ids=lambda p: p.stem)
def test_every_design_says_its_trade_offs_and_costs(path: Path) -> None:
    text = path.read_text()
    assert text.startswith("#") and "cost" in text.split("\nid:")[0].lower(), (
        "a leading comment on trade-offs and cost"
    )
    design = read_design(path)
    assert all(spec.cost is not None for spec in design.regions), "cost rates for every region"


@pytest.mark.parametrize("path", INCIDENTS, ids=lambda p: p.stem)
def test_every_incident_cites_its_source_and_fits_in_90_s(path: Path) -> None:
    scenario = read_scenario(path)
    assert scenario.source and all(url.startswith("https://") for url in scenario.source)
    assert scenario.started_at is not None and scenario.duration is not None
    assert len(scenario.description) > 300, "what happened, and what a design needs to survive it"
    design_path = scenario_design_path(path, scenario)
    assert design_path is not None
    built = plan(read_design(design_path), scenario)
    assert built.run_length <= 90.0
    starts = [p.at for p in scenario.phases]
    assert starts == sorted(starts), "phases in the post-mortem's order"


@pytest.mark.parametrize("design_path", DESIGNS, ids=lambda p: p.stem)
@pytest.mark.parametrize("scenario_path", INCIDENTS + FAULTS, ids=lambda p: p.stem)
def test_every_scenario_plans_against_every_design(scenario_path: Path, design_path: Path) -> None:
    """Names a design lacks make phases inert (a warning), never an error; the local target can
    carry out every phase that touches something."""
    design = read_design(design_path)
    scenario = read_scenario(scenario_path)
    built = plan(design, scenario)
    assert check_plan(built, design) == []


@pytest.mark.parametrize("path", FAULTS, ids=lambda p: p.stem)
def test_each_fault_scenario_touches_its_design(path: Path) -> None:
    scenario = read_scenario(path)
    design_path = scenario_design_path(path, scenario)
    assert design_path is not None
    built = plan(read_design(design_path), scenario)
    assert built.phases[0].kind == path.stem
    assert all(not p.touch.empty for p in built.phases), "no inert phase in living documentation"


@pytest.mark.slow
@pytest.mark.parametrize("path", INCIDENTS, ids=lambda p: p.stem)
def test_each_incident_replay_runs_against_active_passive_sovereign(path: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    proc = subprocess.run(
        [
            sys.executable,
            "-c",
            "from bascule.cli import main; main()",
            "run",
            str(path),
            "--design",
            str(APS),
            "--quiet",
            "--out",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert proc.returncode in (0, 1), proc.stdout + proc.stderr  # completed; hypothesis may fail after
    records = [json.loads(line) for line in (out / "journal.jsonl").read_text().splitlines()]
    (ended,) = [r for r in records if r["type"] == "run-ended"]
    assert ended["exit_code"] == proc.returncode
    applied = [r for r in records if r["type"] == "fault-applied"]
    reverted = [r for r in records if r["type"] == "fault-reverted"]
    assert len(applied) == len(reverted)
    assert [r for r in records if r["type"] == "sovereignty-violation"] == []


def test_scenarios_and_designs_list(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from bascule.cli import app

    runner = CliRunner()
    monkeypatch.chdir(ROOT)
    listed = runner.invoke(app, ["scenarios", "list"], env={"COLUMNS": "300"})
    assert listed.exit_code == 0, listed.output
    for scenario_id in EXPECTED_INCIDENTS | {"fault-dns", "fault-flap"}:
        assert scenario_id in listed.output
    assert "flap(refuse)" in listed.output and "aws.amazon.com" in listed.output
    listed = runner.invoke(app, ["designs", "list"], env={"COLUMNS": "300"})
    assert listed.exit_code == 0, listed.output
    assert "ovhcloud/sbg (sovereign) → scaleway/fr-par (sovereign)" in listed.output
    broken = tmp_path / "broken.yaml"
    broken.write_text("id: x\ntitle: y\nphases: []\n")
    assert runner.invoke(app, ["scenarios", "list", str(broken)]).exit_code == 2
