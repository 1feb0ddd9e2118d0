"""The pytest plugin (entry point ``pytest11``): resilience scenarios as test items, and a fixture.

    pytest --bascule scenarios/faults --bascule-design designs/active-passive-sovereign.yaml

With ``--bascule`` (or ``bascule = true`` in the ini file), every YAML file with ``phases:`` that
pytest meets becomes one item per design — the designs given with ``--bascule-design``, else the
one the scenario names — named ``<design id>`` under the file, so ``-k`` and ``--junitxml`` work as
for any test. An item passes when its run completes and meets its objectives (and
``--bascule-min-score``); a failing item prints the score table and what to do, not a traceback.
Score, grade and key figures go to the item's ``user_properties``, which ``--junitxml`` writes as
properties; a phase whose fault reached no traffic is counted (``bascule.faults_unreached``), said
(``bascule.warning``) and warned of (`BasculeWarning`, in pytest's warnings summary). Each item's
directory (``runs/pytest/<scenario>--<design>``, or under ``--bascule-out``) holds the last
session's run: an earlier one there is removed first.

With ``--bascule-repeat N`` each item runs N times and is judged over its runs (docs/repeats.md): it
passes only when every objective's 95 % interval is on its passing side; inconclusive, fail,
unmeasured or a regression against ``--bascule-baseline DIR`` fail it, with the verdict lines as the
failure text. Its properties carry the verdict, ``bascule.flaky`` and each dimension's verdict and
interval; a flaky pass is counted as ``flaky`` in pytest's summary line (it still passes).

The ``bascule`` fixture runs scenarios from a test written in Python::

    def test_failover_is_quick(bascule):
        result = bascule.run("scenarios/faults/crash.yaml", design="designs/active-passive-sovereign.yaml")
        assert result.dimension("rto").measured < 10

Imports of the runner are deferred: the plugin costs nothing to a pytest session that does not use it.
"""

from __future__ import annotations

import shutil
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
import yaml

if TYPE_CHECKING:
    from bascule.ci.repeat import RepeatOutcome
    from bascule.ci.results import RunResult
    from bascule.verdicts import RepeatSummary

__all__ = [
    "BasculeRunner",
    "ScenarioFailedError",
    "ScenarioFile",
    "ScenarioItem",
    "ScenarioRepeatFailedError",
]


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("bascule", "bascule resilience scenarios")
    group.addoption("--bascule", action="store_true", help="collect scenario YAML files as test items")
    group.addoption(
        "--bascule-design",
        action="append",
        default=[],
        metavar="FILE",
        help="run each scenario against this design (repeatable; default: the design it names)",
    )
    group.addoption("--bascule-target", default="local", help="where scenarios run (default: local)")
    group.addoption("--bascule-min-score", type=float, default=None, help="fail items scoring below this")
    group.addoption(
        "--bascule-out", default=None, metavar="DIR", help="where run directories go (default: runs/pytest)"
    )
    group.addoption(
        "--bascule-repeat",
        type=int,
        default=1,
        metavar="N",
        help="run each item N times and judge it over its runs (docs/repeats.md; N ≥ 2)",
    )
    group.addoption(
        "--bascule-baseline",
        default=None,
        metavar="DIR",
        help="with --bascule-repeat: flag regressions beyond noise against this earlier output",
    )
    parser.addini("bascule", type="bool", default=False, help="collect scenario YAML files as test items")
    parser.addini("bascule_designs", type="linelist", default=[], help="designs to run each scenario against")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "bascule: a bascule resilience scenario run")
    repeats = config.getoption("bascule_repeat", 1)
    if repeats < 1 or (config.getoption("bascule_baseline", None) and repeats < 2):
        raise pytest.UsageError("--bascule-repeat takes N ≥ 1, and --bascule-baseline needs N ≥ 2")


def pytest_report_teststatus(report: pytest.TestReport, config: pytest.Config) -> tuple[str, str, Any] | None:
    """A repeated item that passed although some of its runs did not is counted as ``flaky``: the
    summary line says ``1 flaky``, the verbose line ``FLAKY``; the item still passes."""
    if report.when == "call" and report.passed and ("bascule.flaky", True) in report.user_properties:
        return "flaky", "f", ("FLAKY", {"yellow": True})
    return None


def _enabled(config: pytest.Config) -> bool:
    return bool(config.getoption("bascule") or config.getini("bascule"))


def _is_scenario(path: Path) -> bool:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError):
        return False
    return isinstance(data, dict) and "phases" in data and "id" in data


def pytest_collect_file(parent: pytest.Collector, file_path: Path) -> ScenarioFile | None:
    if _enabled(parent.config) and file_path.suffix in (".yaml", ".yml") and _is_scenario(file_path):
        return ScenarioFile.from_parent(parent, path=file_path)
    return None


class ScenarioFile(pytest.File):
    """One scenario file: an item per design."""

    def collect(self) -> Iterator[ScenarioItem]:
        from bascule.model.loading import read_design, read_scenario, scenario_design_path

        scenario = read_scenario(self.path)
        config = self.config
        designs = [Path(d) for d in config.getoption("bascule_design") or config.getini("bascule_designs")]
        if not designs:
            own = scenario_design_path(self.path, scenario)
            if own is None:
                raise self.CollectError(f"{self.path}: the scenario names no design; pass --bascule-design")
            designs = [own]
        for design_path in designs:
            design = read_design(design_path)
            item = ScenarioItem.from_parent(
                self, name=design.id, design_path=design_path, scenario_id=scenario.id
            )
            item.add_marker(pytest.mark.bascule)
            yield item


class ScenarioFailedError(Exception):
    """A run that did not pass; its result says why."""

    def __init__(self, result: RunResult) -> None:
        super().__init__(result.reason)
        self.result = result


def _properties(result: RunResult) -> list[tuple[str, object]]:
    figures = result.figures
    props: list[tuple[str, object]] = [
        ("bascule.exit_code", result.exit_code),
        ("bascule.score", result.score),
        ("bascule.grade", result.grade),
        ("bascule.run_dir", str(result.run_dir)),
    ]
    props += [
        ("bascule.success_ratio", figures.success_ratio),
        ("bascule.rto", figures.rto),
        ("bascule.time_to_failover", figures.time_to_failover),
        ("bascule.failback", figures.failback),
        ("bascule.sovereignty_violations", figures.sovereignty_violations),
    ]
    props.append(("bascule.faults_unreached", result.faults_unreached))
    props += [("bascule.warning", sentence) for sentence in result.warnings]
    props += [(f"bascule.{d.name}.sub_score", d.sub_score) for d in result.dimensions]
    return props


class ScenarioRepeatFailedError(Exception):
    """A repeated item whose verdict over its runs is not a pass (fail, inconclusive, unmeasured,
    a regression against the baseline, or a run that did not complete)."""

    def __init__(self, summary: RepeatSummary) -> None:
        super().__init__(summary.reason)
        self.summary = summary


def _repeat_properties(summary: RepeatSummary, out: Path) -> list[tuple[str, object]]:
    props: list[tuple[str, object]] = [
        ("bascule.verdict", summary.verdict.value),
        ("bascule.flaky", summary.flaky),
        ("bascule.exit_code", summary.exit_code),
        ("bascule.repeats", summary.repeats),
        ("bascule.runs_judged", sum(1 for r in summary.runs if r.counted)),
        ("bascule.repeat_dir", str(out)),
    ]
    for d in summary.dimensions:
        props.append((f"bascule.{d.name}.verdict", d.verdict.value))
        if d.interval is not None:
            props.append((f"bascule.{d.name}.interval", f"[{d.interval.low:.6g}, {d.interval.high:.6g}]"))
        if d.flaky:
            props.append((f"bascule.{d.name}.flips", d.flips))
    return props


class BasculeWarning(UserWarning):
    """What a run says nothing of, though it may pass (`RunResult.warnings`)."""


def _fresh(out: Path) -> Path:
    """The item's own directory, emptied of the run an earlier session left there: a run is never
    written into one that holds a run (its figures would mix), and the plugin's are its own."""
    if (out / "journal.jsonl").exists() or (out / "repeat.json").exists():
        shutil.rmtree(out)
    return out


class ScenarioItem(pytest.Item):
    """One scenario run against one design."""

    def __init__(self, *, design_path: Path, scenario_id: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.design_path = design_path
        self.scenario_id = scenario_id

    def _out(self) -> Path:
        # Kept after the session (unlike tmp_path), so that CI can upload the reports.
        base = self.config.getoption("bascule_out")
        root = Path(base) if base else self.config.invocation_params.dir / "runs" / "pytest"
        return root / f"{self.scenario_id}--{self.name}"

    def runtest(self) -> None:
        from bascule.ci.results import run

        if self.config.getoption("bascule_repeat") > 1:
            self._run_repeated()
            return
        result = run(
            self.path,
            design=self.design_path,
            out=_fresh(self._out()),
            target=self.config.getoption("bascule_target"),
            min_score=self.config.getoption("bascule_min_score"),
        )
        self.user_properties.extend(_properties(result))
        for sentence in result.warnings:
            warnings.warn(BasculeWarning(f"{self.scenario_id} on {self.name}: {sentence}"), stacklevel=1)
        if not result.passed:
            raise ScenarioFailedError(result)

    def _run_repeated(self) -> None:
        from bascule.ci.repeat import repeat

        outcome = repeat(
            self.path,
            self.config.getoption("bascule_repeat"),
            design=self.design_path,
            out=_fresh(self._out()),
            target=self.config.getoption("bascule_target"),
            min_score=self.config.getoption("bascule_min_score"),
            baseline=self.config.getoption("bascule_baseline"),
        )
        self.user_properties.extend(_repeat_properties(outcome.summary, self._out()))
        if outcome.exit_code != 0:
            raise ScenarioRepeatFailedError(outcome.summary)

    def repr_failure(self, excinfo: pytest.ExceptionInfo[BaseException], style: Any = None) -> str | Any:
        from bascule.errors import ScenarioError
        from bascule.verdicts import render_repeat_lines

        if isinstance(excinfo.value, ScenarioRepeatFailedError):
            return "\n".join(render_repeat_lines(excinfo.value.summary))
        if isinstance(excinfo.value, ScenarioFailedError):
            return excinfo.value.result.failure_text()
        if isinstance(excinfo.value, ScenarioError):
            return "\n".join(str(p) for p in excinfo.value.problems)
        return super().repr_failure(excinfo)

    def reportinfo(self) -> tuple[Path, int | None, str]:
        return self.path, None, f"bascule: {self.scenario_id} on {self.name}"


class BasculeRunner:
    """What the ``bascule`` fixture gives a test: `run` with run directories under its tmp_path."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._count = 0

    def run(self, scenario: str | Path, *, design: str | Path | None = None, **options: Any) -> RunResult:
        from bascule.ci.results import run

        self._count += 1
        out = options.pop("out", None) or self.root / f"run-{self._count}"
        return run(scenario, design=design, out=out, **options)

    def repeat(
        self, scenario: str | Path, repeats: int, *, design: str | Path | None = None, **options: Any
    ) -> RepeatOutcome:
        """`repeats` runs judged together: ``outcome.summary.verdict``, ``.dimension("recovery")``."""
        from bascule.ci.repeat import repeat

        self._count += 1
        out = options.pop("out", None) or self.root / f"repeat-{self._count}"
        return repeat(scenario, repeats, design=design, out=out, **options)


@pytest.fixture
def bascule(tmp_path: Path) -> BasculeRunner:
    """Run bascule scenarios from a test: ``bascule.run("scenarios/…", design="designs/…")``."""
    return BasculeRunner(tmp_path / "bascule")
