"""The whole run logic on the in-memory fake target (tests/fake_target.py), registered through the
target registry like `local` and `kubernetes`: every exit path rolls back what was applied and
ends the journal with ``run-ended``, in seconds and without a process."""

from __future__ import annotations

import errno
import json
import os
import signal
import threading
import time
from collections.abc import Iterator
from dataclasses import replace
from functools import partial
from pathlib import Path
from typing import Any

import pytest
from fake_target import ENTRY, SECRET, FakeStarter
from rich.console import Console

from bascule.ci.results import run_scored
from bascule.errors import RunDirectoryError
from bascule.exit_codes import ExitCode
from bascule.journal import Journal, read_journal
from bascule.model.loading import read_design, read_scenario
from bascule.plan import plan
from bascule.reports.files import score_run
from bascule.runner.interrupt import Abort
from bascule.runner.run import RunOptions, RunOutcome, run_scenario
from bascule.targets import registry
from bascule.targets.registry import PlanDescription, choose, describe_plan

PAR = "scaleway/fr-par"
DESIGN = f"""
id: fake-one
regions: [{{id: {PAR}}}]
components:
  notes:
    entry: true
    url: {{{PAR}: "http://127.0.0.1:9"}}
    replicas: {{{PAR}: 1}}
"""


def scenario(
    phases: str,
    *,
    guardrails: str = "",
    objectives: str = "{availability: 0.5}",
    warm_up: str = "0s",
    settle: str = "0.1s",
    duration: str = "",
) -> str:
    return f"""
id: fake-run
title: a short run on the fake target
design: design.yaml
{f"duration: {duration}" if duration else ""}
replay: {{time_scale: 1, min_phase: 0.1s}}
warm_up: {warm_up}
settle: {settle}
steady_state:
  probes: [{{kind: http, url: /healthz, rate: 20, timeout: 2s}}]
  over: 0.4s
  success_ratio: 1.0
phases:
{phases}
objectives: {objectives}
weights: {{correctness: 0, durability: 0}}
{guardrails}
"""


LATENCY = """
  - {name: slower, at: 0s, for: 0.2s, fault: {kind: latency, fixed: 10ms}, target: {component: notes}}
"""
ERRORS = """
  - {name: errors, at: 0s, for: 0.5s, fault: {kind: http-error, statuses: [503], ratio: 1.0},
     target: {component: notes}}
"""
TWO = """
  - {name: slower, at: 0s, for: 0.4s, fault: {kind: latency, fixed: 10ms}, target: {component: notes}}
  - {name: later, at: 0.05s, for: 0.2s, fault: {kind: latency, fixed: 20ms}, target: {component: notes}}
"""
LONG = """
  - {name: slower, at: 0s, for: 5s, fault: {kind: latency, fixed: 10ms}, target: {component: notes}}
"""


@pytest.fixture(autouse=True)
def fake_registered(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setitem(registry.TARGETS, ENTRY.name, ENTRY)
    yield


def files(tmp_path: Path, text: str) -> Path:
    (tmp_path / "design.yaml").write_text(DESIGN)
    path = tmp_path / "scenario.yaml"
    path.write_text(text)
    return path


def fake(fail: str | None = None) -> FakeStarter:
    starter = choose("fake", {"fake_fail": fail})
    assert isinstance(starter, FakeStarter)
    return starter


def run(
    tmp_path: Path, text: str, fail: str | None = None, starter: FakeStarter | None = None
) -> tuple[RunOutcome, FakeStarter]:
    starter = starter or fake(fail)
    options = RunOptions(files(tmp_path, text), starter, out=tmp_path / "run", quiet=True)
    with open(os.devnull, "w") as sink:
        outcome = run_scenario(
            options, console=Console(file=sink), scoring=partial(score_run, min_score=None)
        )
    return outcome, starter


def records(outcome: RunOutcome, kind: str | None = None) -> list[dict[str, Any]]:
    found = list(read_journal(outcome.run_dir / "journal.jsonl"))
    return [r for r in found if kind is None or r["type"] == kind]


def assert_rolled_back_and_ended(outcome: RunOutcome, starter: FakeStarter) -> None:
    """Whatever was applied was reverted; the journal ends with ``run-ended`` and the exit code."""
    for target in starter.started:
        assert sorted(target.applied()) == sorted(target.reverted())
        assert target.active() == []
        assert target.stopped is not None, "the target was stopped"
    applied = {(r["phase"], r["cycle"]) for r in records(outcome, "fault-applied")}
    reverted = {(r["phase"], r["cycle"]) for r in records(outcome, "fault-reverted") if "phase" in r}
    rolled_back = [r for r in records(outcome, "fault-reverted") if r.get("rollback")]
    assert len(applied - reverted) == len(rolled_back)
    last = records(outcome)[-1]
    assert last["type"] == "run-ended"
    assert (last["exit_code"], last["reason"]) == (outcome.exit_code, outcome.reason)


def test_a_completed_run_is_scored_before_it_ends_and_reported_after(tmp_path: Path) -> None:
    starter = fake()
    options = RunOptions(files(tmp_path, scenario(LATENCY)), starter, out=tmp_path / "run", quiet=True)
    outcome = run_scored(options, console=Console(quiet=True), charts=False)
    assert outcome.exit_code == ExitCode.OK, outcome.reason
    assert_rolled_back_and_ended(outcome, starter)
    assert {p.name for p in outcome.reports} == {"result.json", "summary.md", "report.html"}
    # The same journal under --min-score above its score: exit 1, the shared scoring says why.
    strict = score_run(outcome.run_dir, ExitCode.OK, "completed", min_score=100.1)
    assert strict.exit_code == ExitCode.OBJECTIVES_FAILED and "below --min-score 100.1" in strict.reason
    assert "objectives not met" not in strict.reason  # every objective was: only the floor is said
    (target,) = starter.started
    assert len(target.applied()) == 1 and target.stopped is False
    types = [r["type"] for r in records(outcome)]
    assert types.index("score") == len(types) - 2
    (started,) = records(outcome, "target-started")
    assert started["target"] == "fake" and started["entries"] == {PAR: target.url}
    assert records(outcome, "run-started")[0]["options"]["target"] == "fake"
    # The target's own fields on each transition, and its own events, journaled as they are.
    assert all(
        "fake_log" in r for r in records(outcome, "fault-applied") + records(outcome, "fault-reverted")
    )
    assert records(outcome, "fake-event")[0]["note"] == "subscribed"
    assert [r["ok"] for r in records(outcome, "hypothesis")] == [True, True]
    assert any(r["source"].startswith("http") and r["ok"] for r in records(outcome, "sample"))


def test_a_score_below_min_score_fails_in_every_report_not_only_in_the_exit_code(tmp_path: Path) -> None:
    # Every objective met (score 100), judged against a floor above it: the gate failed, and the
    # pull request's summary must not open with a green PASS (a new user saw it do so).
    options = RunOptions(files(tmp_path, scenario(LATENCY)), fake(), out=tmp_path / "run", quiet=True)
    outcome = run_scored(options, min_score=100.1, console=Console(quiet=True), charts=False)
    assert outcome.exit_code == ExitCode.OBJECTIVES_FAILED
    assert "below --min-score 100.1" in outcome.reason
    (record,) = records(outcome, "score")
    assert record["min_score"] == 100.1 and record["passed"] is False and record["overall"] == 100.0
    result = json.loads((outcome.run_dir / "result.json").read_text())
    assert result["score"]["passed"] is False and result["score"]["min_score"] == 100.1
    assert all(d["passed"] is True for d in result["score"]["dimensions"] if d["weight"])
    title = (outcome.run_dir / "summary.md").read_text().splitlines()[0]
    assert title.startswith("## ❌ FAIL · 100.0/100"), title
    # Without a floor, the same run passes, and its documents say no floor was given.
    plain = run_scored(replace(options, out=tmp_path / "plain"), console=Console(quiet=True), charts=False)
    assert plain.exit_code == ExitCode.OK, plain.reason
    result = json.loads((plain.run_dir / "result.json").read_text())
    assert result["score"]["passed"] is True and "min_score" not in result["score"]


def test_the_hypothesis_is_checked_in_the_warm_ups_and_the_settles_last_over_seconds_never_with_a_fault(
    tmp_path: Path,
) -> None:
    # A plan of 1 s whose fault ends at 0.2 s, a settle of 1 s: the impact window the metrics
    # measure ends 1.2 s into the plan, the settle 2 s into it.
    outcome, starter = run(tmp_path, scenario(LATENCY, warm_up="1s", settle="1s", duration="1s"))
    assert outcome.exit_code == ExitCode.OK, outcome.reason
    before, after = records(outcome, "hypothesis")
    (probes,) = records(outcome, "probes-started")
    (plan_started,) = records(outcome, "plan-started")
    faults = records(outcome, "fault-applied") + records(outcome, "fault-reverted")
    over = 0.4
    for check in (before, after):
        assert check["ok"] is True and check["end"] - check["start"] == pytest.approx(over)
        # No fault in force, or changed, during either window or while its last samples end.
        assert not any(check["start"] <= f["t"] <= check["t"] for f in faults)
    # Before: the warm-up's last 0.4 s (it began once the probes were started), and the plan
    # starts once that check has ended — not `over` seconds after the warm-up.
    warm_end = probes["t"] + 1.0
    assert warm_end - over - 0.1 <= before["start"] <= warm_end - over + 0.1
    assert before["t"] <= plan_started["t"] < before["t"] + 0.2
    # After: the settle's last 0.4 s, after the impact window; the run ends with the settle.
    (reverted,) = records(outcome, "fault-reverted")
    settle_end = plan_started["t"] + 1.0 + 1.0
    assert after["start"] > reverted["t"] + 1.0
    assert settle_end - over <= after["start"] < settle_end - over + 0.2
    assert after["end"] < settle_end + 0.2
    assert_rolled_back_and_ended(outcome, starter)


def test_the_check_after_waits_for_the_impact_window_to_end_and_a_short_settle_is_extended(
    tmp_path: Path,
) -> None:
    outcome, _ = run(tmp_path, scenario(LATENCY, settle="0s"))
    assert outcome.exit_code == ExitCode.OK, outcome.reason
    before, after = records(outcome, "hypothesis")
    (plan_started,) = records(outcome, "plan-started")
    (reverted,) = records(outcome, "fault-reverted")
    # No warm-up: the check before is judged over 0.4 s from the probes' start, the plan after it.
    assert before["end"] <= plan_started["t"]
    # No settle: the check after opens once the revert is done and lasts its 0.4 s all the same.
    assert reverted["t"] <= after["start"] < reverted["t"] + 0.2
    assert after["end"] - after["start"] == pytest.approx(0.4)
    # A settle of 1 s after a fault that ends with the plan: the impact window is the whole settle,
    # and the check opens as it ends, as it always did.
    (tmp_path / "settled").mkdir()
    outcome, _ = run(tmp_path / "settled", scenario(LATENCY, settle="1s"))
    assert outcome.exit_code == ExitCode.OK, outcome.reason
    (reverted,) = records(outcome, "fault-reverted")
    _, after = records(outcome, "hypothesis")
    assert reverted["t"] + 1.0 <= after["start"] < reverted["t"] + 1.2


def test_objectives_not_met_exit_1(tmp_path: Path) -> None:
    outcome, starter = run(tmp_path, scenario(ERRORS, objectives="{availability: 0.99}"))
    assert outcome.exit_code == ExitCode.OBJECTIVES_FAILED
    assert outcome.reason.startswith("objectives not met: ") and "availability" in outcome.reason
    assert_rolled_back_and_ended(outcome, starter)
    (score,) = records(outcome, "score")
    assert score["passed"] is False and "availability" in score["failing"]
    assert not any(r["ok"] for r in records(outcome, "sample") if r["status"] == 503)


def test_a_hypothesis_failing_before_any_fault_ends_the_run_with_nothing_applied(tmp_path: Path) -> None:
    outcome, starter = run(tmp_path, scenario(LATENCY), fail="unhealthy")
    assert outcome.exit_code == ExitCode.TARGET_ERROR
    assert outcome.reason is not None
    # … and why, as the terminal, summary.md and result.json then say it
    assert outcome.reason.startswith("the steady-state hypothesis failed before any fault: "), outcome.reason
    assert "GET /healthz: HTTP 503, expected 200" in outcome.reason
    assert_rolled_back_and_ended(outcome, starter)
    assert starter.started[0].log == []
    assert records(outcome, "plan-started") == [] and records(outcome, "score") == []


def test_a_guardrail_aborts_and_rolls_back(tmp_path: Path) -> None:
    guard = "guardrails: [{kind: success-ratio, below: 0.9, for: 0.5s}]"
    long_errors = ERRORS.replace("for: 0.5s", "for: 30s")
    outcome, starter = run(tmp_path, scenario(long_errors, guardrails=guard))
    assert outcome.exit_code == ExitCode.ABORTED and outcome.reason.startswith("guardrail success-ratio")
    assert_rolled_back_and_ended(outcome, starter)
    assert len(records(outcome, "guardrail-tripped")) == 1
    (rollback,) = [r for r in records(outcome, "fault-reverted") if r.get("rollback")]
    assert rollback["kind"] == "http-error"


def signal_once_applied(starter: FakeStarter, signum: int) -> threading.Thread:
    """Send `signum` to this process a little after the first fault is in force (mid-plan)."""

    def wait() -> None:
        deadline = time.monotonic() + 10.0
        while time.monotonic() < deadline:
            if starter.started and starter.started[0].applied():
                time.sleep(0.1)
                os.kill(os.getpid(), signum)
                return
            time.sleep(0.01)

    thread = threading.Thread(target=wait, daemon=True)
    thread.start()
    return thread


def test_a_sigterm_mid_plan_aborts_and_rolls_back(tmp_path: Path) -> None:
    starter = fake()
    sender = signal_once_applied(starter, signal.SIGTERM)
    outcome, _ = run(tmp_path, scenario(LONG), starter=starter)
    sender.join()
    assert (outcome.exit_code, outcome.reason) == (ExitCode.ABORTED, "interrupted by SIGTERM")
    assert_rolled_back_and_ended(outcome, starter)
    assert len(starter.started[0].applied()) == 1
    (rollback,) = [r for r in records(outcome, "fault-reverted") if r.get("rollback")]
    assert rollback["kind"] == "latency"


def test_a_sigint_during_apply_waits_for_the_fault_to_be_recorded_and_a_second_one_hurries(
    tmp_path: Path,
) -> None:
    outcome, starter = run(tmp_path, scenario(LONG), fail="hurry")
    assert (outcome.exit_code, outcome.reason) == (ExitCode.ABORTED, "interrupted by SIGINT")
    assert_rolled_back_and_ended(outcome, starter)
    (applied,) = records(outcome, "fault-applied")
    (rollback,) = [r for r in records(outcome, "fault-reverted") if r.get("rollback")]
    assert applied["t"] <= rollback["t"]
    assert starter.started[0].stopped is True, "stopped in a hurry"


def test_an_exception_in_apply_rolls_back_what_was_applied(tmp_path: Path) -> None:
    outcome, starter = run(tmp_path, scenario(TWO), fail="apply")
    assert outcome.exit_code == ExitCode.TARGET_ERROR and "broke while applying" in outcome.reason
    assert_rolled_back_and_ended(outcome, starter)
    (target,) = starter.started
    assert len(target.applied()) == 1
    assert [op for op, note in target.log if note.endswith("apply failed")] == ["reverted"]
    assert records(outcome, "error")[0]["message"] == outcome.reason


def test_a_fault_that_cannot_be_reverted_ends_the_run_with_exit_4(tmp_path: Path) -> None:
    outcome, starter = run(tmp_path, scenario(LATENCY), fail="revert")
    assert outcome.exit_code == ExitCode.TARGET_ERROR and "could not revert" in outcome.reason
    (target,) = starter.started
    assert len(target.active()) == 1 and target.stopped is False, "left in force, for `bascule recover`"
    assert records(outcome)[-1]["type"] == "run-ended"
    assert outcome.reason in [r["message"] for r in records(outcome, "error")]


def test_an_exception_in_start_ends_the_run(tmp_path: Path) -> None:
    outcome, starter = run(tmp_path, scenario(LATENCY), fail="start")
    assert (outcome.exit_code, outcome.reason) == (ExitCode.TARGET_ERROR, "the fake target could not start")
    assert_rolled_back_and_ended(outcome, starter)
    assert starter.started == [] and records(outcome, "target-started") == []


def test_a_refusal_from_check_exits_2_and_stops_the_target(tmp_path: Path) -> None:
    outcome, starter = run(tmp_path, scenario(LATENCY), fail="refuse")
    assert outcome.exit_code == ExitCode.INVALID_INPUT
    assert outcome.reason == "the fake target refuses: phase 0 (slower): the fake refuses it"
    assert_rolled_back_and_ended(outcome, starter)
    assert [r["message"] for r in records(outcome, "refused")] == ["phase 0 (slower): the fake refuses it"]
    assert starter.started[0].log == []


def test_an_exception_in_check_stops_the_target(tmp_path: Path) -> None:
    outcome, starter = run(tmp_path, scenario(LATENCY), fail="check")
    assert outcome.exit_code == ExitCode.TARGET_ERROR and "while checking" in outcome.reason
    assert_rolled_back_and_ended(outcome, starter)


def test_an_unknown_target_is_refused_and_journaled(tmp_path: Path) -> None:
    options = RunOptions(files(tmp_path, scenario(LATENCY)), choose("mars"), out=tmp_path / "run", quiet=True)
    outcome = run_scenario(options, console=Console(quiet=True))
    assert outcome.exit_code == ExitCode.INVALID_INPUT
    assert outcome.reason == "unknown target 'mars': local or kubernetes or fake"
    assert records(outcome)[-1]["type"] == "run-ended"


def test_plan_time_description_comes_from_the_registry(tmp_path: Path) -> None:
    path = files(tmp_path, scenario(TWO))
    built = plan(read_design(tmp_path / "design.yaml"), read_scenario(path))
    described = describe_plan("fake", built, read_design(tmp_path / "design.yaml"))
    assert isinstance(described, PlanDescription)
    assert described.lines == tuple(f"fake: {a.op.value} {a.key}" for a in built.actions)
    assert describe_plan("local", built, read_design(tmp_path / "design.yaml")) == PlanDescription()


SETUP = """
id: fake-setup
title: setup requests fill the probes
design: design.yaml
replay: {time_scale: 1, min_phase: 0.1s}
warm_up: 0s
settle: 0.1s
setup:
  - {name: create, url: /things, json: {n: 42}, save: {thing: id, token: token}}
steady_state:
  probes:
    - {kind: http, url: "/things/{setup.thing}", rate: 20, assertions: [{path: path, equals: /things/t-42}]}
    - {kind: http, url: /private, rate: 20, headers: {x-token: "{setup.token}"}}
  over: 1s
phases:
  - {name: slower, at: 0s, for: 0.2s, fault: {kind: latency, fixed: 10ms}, target: {component: notes}}
weights: {correctness: 0, durability: 0}
"""


def test_setup_requests_fill_the_probes_and_keep_saved_values_out_of_the_journal(tmp_path: Path) -> None:
    outcome, starter = run(tmp_path, SETUP)
    assert outcome.exit_code == 0, outcome.reason
    (setup,) = records(outcome, "setup")
    assert (setup["name"], setup["status"], setup["saved"]) == (
        "create",
        201,
        {"thing": 4, "token": len(SECRET)},
    )
    (before, after) = records(outcome, "hypothesis")
    assert before["ok"] and after["ok"]
    assert SECRET not in (outcome.run_dir / "journal.jsonl").read_text()
    assert_rolled_back_and_ended(outcome, starter)


def test_a_failing_setup_request_stops_the_run_before_any_fault(tmp_path: Path) -> None:
    outcome, starter = run(tmp_path, SETUP.replace("url: /things,", "url: /nowhere,"))
    assert outcome.exit_code == ExitCode.TARGET_ERROR
    assert "setup step 'create' got HTTP 404, expected 200, 201" in outcome.reason
    assert records(outcome, "fault-applied") == []
    assert_rolled_back_and_ended(outcome, starter)


def test_a_signal_sets_the_abort_a_suite_shares_so_that_no_further_run_starts(tmp_path: Path) -> None:
    starter = fake()
    shared = Abort()
    sender = signal_once_applied(starter, signal.SIGINT)
    options = RunOptions(files(tmp_path, scenario(LONG)), starter, out=tmp_path / "run", quiet=True)
    with open(os.devnull, "w") as sink:
        outcome = run_scenario(options, console=Console(file=sink), abort=shared)
    sender.join()
    assert (outcome.exit_code, outcome.reason) == (ExitCode.ABORTED, "interrupted by SIGINT")
    assert shared.interrupted and not shared.hurry and not outcome.hurried
    assert_rolled_back_and_ended(outcome, starter)


def test_a_guardrail_ends_its_own_run_of_several_and_the_next_one_starts(tmp_path: Path) -> None:
    """`suite` and `compare` give each run a child of their abort: a guardrail is that run's."""
    guard = "guardrails: [{kind: success-ratio, below: 0.9, for: 0.5s}]"
    long_errors = ERRORS.replace("for: 0.5s", "for: 30s")
    command = Abort()
    tripped = RunOptions(
        files(tmp_path, scenario(long_errors, guardrails=guard)), fake(), out=tmp_path / "one", quiet=True
    )
    with open(os.devnull, "w") as sink:
        first = run_scenario(tripped, console=Console(file=sink), abort=command.child())
        assert first.reason.startswith("guardrail success-ratio")
        assert not command.is_set, "a guardrail does not stop the runs to come"
        calm = RunOptions(files(tmp_path, scenario(LATENCY)), fake(), out=tmp_path / "two", quiet=True)
        second = run_scenario(calm, console=Console(file=sink), abort=command.child())
    assert second.reason != first.reason and not second.reason.startswith("interrupted")


def test_a_signal_during_one_run_of_several_stops_the_command_too(tmp_path: Path) -> None:
    starter = fake()
    command = Abort()
    sender = signal_once_applied(starter, signal.SIGTERM)
    options = RunOptions(files(tmp_path, scenario(LONG)), starter, out=tmp_path / "run", quiet=True)
    with open(os.devnull, "w") as sink:
        outcome = run_scenario(options, console=Console(file=sink), abort=command.child())
    sender.join()
    assert (outcome.exit_code, outcome.reason) == (ExitCode.ABORTED, "interrupted by SIGTERM")
    assert command.interrupted and not command.hurry
    assert command.child().is_set, "a run started after the signal is stopped before it begins"
    assert_rolled_back_and_ended(outcome, starter)


class _FillingFile:
    """A journal file on a disk that fills up once a fault is in force."""

    def __init__(self, inner: Any) -> None:
        self.inner, self.full = inner, False

    def write(self, text: str) -> int:
        if self.full:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        self.full = '"type":"fault-applied"' in text
        return int(self.inner.write(text))

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


def test_a_journal_that_cannot_be_written_ends_the_run_with_exit_4_and_everything_reverted(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    opened = Journal.__init__

    def filling(self: Journal, *args: Any, **kwargs: Any) -> None:
        opened(self, *args, **kwargs)
        self._file = _FillingFile(self._file)  # type: ignore[assignment]

    monkeypatch.setattr(Journal, "__init__", filling)
    outcome, starter = run(tmp_path, scenario(LONG))
    assert outcome.exit_code == ExitCode.TARGET_ERROR
    assert outcome.reason == f"the journal in {tmp_path / 'run'} cannot be written: the disk is full"
    (target,) = starter.started
    assert len(target.applied()) == 1 and target.reverted() == target.applied() and target.active() == []
    assert target.stopped is not None
    assert records(outcome)[-1]["type"] == "fault-applied"  # nothing more could be written


@pytest.mark.parametrize("where", ["a file in the way", "a path under a file"])
def test_a_run_directory_that_cannot_be_made_is_one_error_and_nothing_starts(
    tmp_path: Path, where: str
) -> None:
    blocker = tmp_path / "blocker"
    blocker.write_text("not a directory")
    out = blocker if where == "a file in the way" else blocker / "run"
    starter = fake()
    options = RunOptions(files(tmp_path, scenario(LATENCY)), starter, out=out, quiet=True)
    with pytest.raises(RunDirectoryError, match=f"cannot use {out} as a run directory: "):
        run_scenario(options, console=Console(quiet=True))
    assert starter.started == []
