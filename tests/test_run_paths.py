"""Paths on a whole run, through the fake target (tests/fake_target.py): every sample gets the hops
the target saw for its trace, every hop is some request's, and sovereignty is judged over them."""

from __future__ import annotations

from pathlib import Path

from rich.console import Console
from test_run_logic import LATENCY, PAR, fake, fake_registered, files, records, scenario

from bascule.ci.results import run_scored
from bascule.exit_codes import ExitCode
from bascule.runner.run import RunOptions

__all__ = ["fake_registered"]  # its autouse fixture registers the fake target here too


def test_every_probe_sample_gets_the_hops_the_target_saw_for_its_trace(tmp_path: Path) -> None:
    """Paths come from the target, tied to each request by its trace id; sovereignty is then judged
    over those requests, and a target that sees no path would leave it unmeasured."""
    starter = fake()
    options = RunOptions(files(tmp_path, scenario(LATENCY)), starter, out=tmp_path / "run", quiet=True)
    outcome = run_scored(options, console=Console(quiet=True), charts=False)
    assert outcome.exit_code == ExitCode.OK, outcome.reason
    samples = records(outcome, "sample")
    assert samples and all(s["trace_id"] for s in samples)
    for s in samples:
        assert [(h["component"], h["region"], h["via"]) for h in s["hops"]] == [("notes", PAR, "fault-plane")]
    (paths,) = records(outcome, "paths-report")
    # Every hop is some request's: the continuous probes' and the steady-state checks' (judged apart).
    assert paths["claimed"] == paths["hops"] > len(samples) and paths["unclaimed"] == {}
    assert paths["incomplete_routes"] == []
    (report,) = records(outcome, "sovereignty-report")
    assert report["judged"] > 0 and report["unattributed"] == 0
