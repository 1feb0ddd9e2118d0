"""`import bascule`: one front door, cheap to import, naming what a Python user needs."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import bascule


def test_the_front_door_names_the_api() -> None:
    from bascule.ci.results import RunResult, read_result, run
    from bascule.errors import BasculeError, ScenarioError
    from bascule.model.loading import read_design, read_scenario

    assert bascule.run is run and bascule.RunResult is RunResult and bascule.read_result is read_result
    assert bascule.read_design is read_design and bascule.read_scenario is read_scenario
    assert bascule.BasculeError is BasculeError and issubclass(bascule.ScenarioError, BasculeError)
    assert bascule.ScenarioError is ScenarioError
    assert sorted(bascule.__all__) == sorted(set(bascule.__all__))
    for name in bascule.__all__:
        assert getattr(bascule, name) is not None, name
    assert bascule.__version__


def test_importing_bascule_loads_nothing_heavy() -> None:
    """The services of the reference stack and the load generator's processes import parts of
    bascule: the package itself must not drag the runner, the targets or the reports in."""
    code = "import sys, bascule; print(sorted(m for m in sys.modules if m.startswith('bascule.')))"
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert done.stdout.strip() == "['bascule._version', 'bascule.errors']"


def test_an_unknown_name_is_an_attribute_error() -> None:
    try:
        bascule.nothing_here  # noqa: B018
    except AttributeError as exc:
        assert "nothing_here" in str(exc)
    else:
        raise AssertionError("expected AttributeError")


def test_read_result_takes_a_path_as_text_and_names_a_missing_directory(tmp_path: Path) -> None:
    # The README's `run` takes text; `read_result` raised TypeError on it (trial 11).
    run_dir = tmp_path / "runs" / "x"
    run_dir.mkdir(parents=True)
    shutil.copy(Path(__file__).parent / "samples" / "result-sample.json", run_dir / "result.json")
    result = bascule.read_result(str(run_dir))
    assert result.run_dir == run_dir and result.document.run.design.id == "active-passive-sovereign"
    with pytest.raises(FileNotFoundError, match="no run directory"):
        bascule.read_result(str(tmp_path / "runs" / "y"))
