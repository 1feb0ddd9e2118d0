"""`bascule report` and `bascule compare` on journals with known answers (tests/journal_factory.py):
every report file written, the score printed, the comparison explained in words."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from journal_factory import (
    PRIMARY,
    STANDBY,
    JournalSpec,
    Served,
    one_phase_scenario,
    reference_design,
    write_journal,
)
from typer.testing import CliRunner

from bascule.cli import app
from bascule.reports.files import REPORT_FILES

runner = CliRunner()


def synthetic_run(run_dir: Path, *, fails_over: bool, design_id: str) -> Path:
    """A 12 s outage of the primary; a design that fails over keeps answering from the standby."""
    design = reference_design().model_copy(update={"id": design_id})

    def world(t: float, source: str, data_class: str) -> Served:
        if data_class == "confidential":
            return Served(True, STANDBY, correct=True)
        if 0.0 <= t < 12.0:
            return Served(True, STANDBY, correct=True) if fails_over else Served(False)
        return Served(True, PRIMARY, correct=True)

    run_dir.mkdir(parents=True)
    write_journal(JournalSpec(design, one_phase_scenario(), world, length=25.0), run_dir / "journal.jsonl")
    return run_dir


def test_report_renders_every_file_and_prints_the_score(tmp_path: Path) -> None:
    run_dir = synthetic_run(tmp_path / "run", fails_over=True, design_id="active-passive-sovereign")
    result = runner.invoke(app, ["report", str(run_dir)])
    assert result.exit_code == 0, result.output
    assert "score " in result.output and "grade" in result.output and "rendered in" in result.output
    for name in REPORT_FILES:
        assert (run_dir / name).stat().st_size > 0, name
    document = json.loads((run_dir / "result.json").read_text())
    assert document["schema"] == "bascule.result/1" and document["run"]["dir"] == str(run_dir)


def test_report_of_a_directory_without_a_journal_exits_2(tmp_path: Path) -> None:
    assert runner.invoke(app, ["report", str(tmp_path)]).exit_code == 2


def test_compare_existing_runs_explains_the_winner(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    good = synthetic_run(tmp_path / "good", fails_over=True, design_id="standby")
    bad = synthetic_run(tmp_path / "bad", fails_over=False, design_id="alone")
    summary = tmp_path / "step-summary.md"
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(summary))
    out = tmp_path / "cmp"
    result = runner.invoke(app, ["compare", str(good), str(bad), "--out", str(out)], env={"COLUMNS": "300"})
    # As every verb: 1 when a run compared missed its objectives (the design that lost availability).
    assert result.exit_code == 1, result.output
    assert "objectives not met by 1 of 2:" in result.output and "on alone" in result.output
    text = (out / "compare.md").read_text()
    assert "| scenario | standby | alone |" in text
    assert "standby (" in text and "beats alone (" in text and "availability" in text
    assert (out / "compare.html").read_text().startswith("<!DOCTYPE html>")
    assert summary.read_text() == text + "\n"


def test_compare_needs_something_to_compare(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    given = tmp_path / "given"
    given.mkdir()
    design = str(Path(__file__).resolve().parent.parent / "designs" / "single-region.yaml")
    monkeypatch.chdir(tmp_path)
    assert runner.invoke(app, ["compare"]).exit_code == 2
    assert runner.invoke(app, ["compare", str(given)]).exit_code == 2
    assert runner.invoke(app, ["compare", str(given), "-d", design]).exit_code == 2
    assert not (tmp_path / "runs").exists(), "a refused compare leaves no directory behind"


def _cut_off(run_dir: Path, pid: int, start_time: int) -> None:
    """The journal as a run killed mid-plan leaves it (no ``run-ended``), and its ledger's owner."""
    journal = run_dir / "journal.jsonl"
    lines = journal.read_text().splitlines()
    kept = [line for line in lines if json.loads(line)["type"] not in ("run-ended", "score")]
    assert len(kept) < len(lines)
    journal.write_text("\n".join(kept) + "\n")
    owner = {
        "type": "run",
        "owner": {"pid": pid, "start_time": start_time},
        "marker": "m",
        "design": "d",
        "at": 0,
    }
    (run_dir / "ledger.jsonl").write_text(json.dumps(owner) + "\n")


def test_a_run_whose_process_is_gone_without_ending_is_not_scored(tmp_path: Path) -> None:
    """A killed run's journal just stops: while its process runs, `report` scores what it has (a
    run in progress); once that process is gone, never — its faults were never rolled back."""
    import os
    import subprocess
    import sys

    from bascule.targets.local.procfs import process_start_time

    me = process_start_time(os.getpid())
    assert me is not None
    alive = synthetic_run(tmp_path / "alive", fails_over=True, design_id="active-passive-sovereign")
    _cut_off(alive, os.getpid(), me)
    in_progress = runner.invoke(app, ["report", str(alive), "--no-charts"])
    assert in_progress.exit_code == 0 and "score " in in_progress.output, in_progress.output

    gone = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], check=True, capture_output=True, text=True
    )
    pid = int(gone.stdout)
    killed = synthetic_run(tmp_path / "killed", fails_over=True, design_id="active-passive-sovereign")
    _cut_off(killed, pid, me + 1)
    result = runner.invoke(app, ["report", str(killed), "--no-charts"])
    assert result.exit_code == 0, result.output
    assert "not scored (killed: its process (PID" in " ".join(result.output.split())
    document = json.loads((killed / "result.json").read_text())
    assert document["score"]["overall"] is None and document["score"]["passed"] is False
    assert document["run"]["reason"].startswith(f"killed: its process (PID {pid}) is gone")
    assert "the run never ended (killed" in (killed / "summary.md").read_text()
