"""``bascule run``: execute a scenario end to end against a target, journal everything, roll back
on every exit path.

Lifecycle: plan (pure) → start the target → start probes and load → warm up, checking the
steady-state hypothesis over the warm-up's last ``over`` seconds (a system unhealthy before any
fault ends the run at once) → carry out the plan's actions on the monotonic clock, journaling their
*actual* instants → settle, checking the hypothesis again over its last ``over`` seconds once
every revert is done (`runner.engine` places both windows) → read canary writes back (those of
the settle's last instants left out rather than waited for) → stop load and probes → revert
whatever is still in force and stop the target → score (a step the caller passes in) →
``run-ended``. A guardrail, Ctrl-C or SIGTERM aborts: everything is reverted at once and the
journal says why. A second Ctrl-C hurries: processes are killed instead of stopped.

The runner knows targets only as `bascule.targets.base.Target`, started by the `TargetStarter` its
caller chose (`bascule.targets.registry.choose`). The loop follows
``bascule.runner.engine.next_step`` (decide) and acts; samples from load and probes are pumped by
`runner.traffic`. Scoring and the report files are the caller's (`bascule.ci.results.run_scored`).
"""

from __future__ import annotations

import os
import platform
import sys
import threading
import time
from functools import partial
from pathlib import Path

from rich.console import Console

from bascule._version import __version__
from bascule.errors import BasculeError
from bascule.exit_codes import ExitCode
from bascule.journal import Journal
from bascule.plan import ActionOp, plan_to_dict
from bascule.probes.base import ProbeContext
from bascule.rundir import describe_os_error, prepare_run_directory
from bascule.runner.display import Display
from bascule.runner.engine import CheckAfter, DoAction, Finish, Stage, check_before, measured_until, next_step
from bascule.runner.guardrails import GuardrailMonitor
from bascule.runner.hypothesis import FAILED_AFTER, FAILED_BEFORE, SteadyStateCheck
from bascule.runner.inputs import (
    RunInputs,
    RunOptions,
    RunOutcome,
    Scored,
    Scoring,
    default_run_dir,
    load_inputs,
)
from bascule.runner.interrupt import Abort, signals
from bascule.runner.live import LiveState
from bascule.runner.metrics_endpoint import MetricsEndpoint
from bascule.runner.records import jsonable
from bascule.runner.setup import set_up
from bascule.runner.traffic import SPAN_HOLD, TICK, Traffic
from bascule.targets.base import Refusal, StartRequest, Target, TargetEvent
from bascule.traces import TraceReceiver
from bascule.traces.timeline import TimelineExport
from bascule.web import RunPage

__all__ = ["RunInputs", "RunOptions", "RunOutcome", "Scored", "Scoring", "load_inputs", "run_scenario"]


def run_scenario(
    options: RunOptions,
    *,
    console: Console | None = None,
    scoring: Scoring | None = None,
    abort: Abort | None = None,
) -> RunOutcome:
    """Run one scenario; never raises for what happens during the run (it is journaled and turned
    into an exit code), only :class:`ScenarioError` for invalid input before anything starts, and
    `RunDirectoryError` when the run directory cannot be written (or holds a run already).
    `scoring` scores a completed run before its journal ends (none: not scored). `abort` is the
    caller's, shared by the runs of a suite (a signal stops the suite too); by default the run's own."""
    inputs = load_inputs(options)
    timeline = None if options.otlp_timeline is None else TimelineExport(options.otlp_timeline)
    out = options.out or default_run_dir(inputs.scenario, inputs.design)
    run_dir = prepare_run_directory(out, fresh=True)
    runner = _Runner(options, inputs, run_dir, console or Console(), abort or Abort())
    if timeline is not None:
        runner.journal.subscribe(timeline)
    outcome = runner.execute(scoring)
    # Once the journal is closed: the run never waits for a collector. A hurried exit skips it.
    if timeline is not None and not outcome.hurried:
        sent, message = timeline.export()
        if sent:
            (console or Console()).print(message, highlight=False)
        elif message:  # on stderr: a suite's runs print nothing else
            Console(stderr=True).print(f"[yellow]warning[/yellow] {message}", highlight=False, soft_wrap=True)
    return outcome


class _Runner:
    def __init__(
        self, options: RunOptions, inputs: RunInputs, run_dir: Path, out: Console, abort: Abort
    ) -> None:
        self.options = options
        scenario, design, built = inputs.scenario, inputs.design, inputs.plan
        self.scenario, self.design, self.design_path, self.plan = scenario, design, inputs.design_path, built
        self.run_dir = run_dir
        self.origin = time.monotonic()
        self.abort = abort
        self.journal = Journal(run_dir, self.origin, raw_samples=options.raw_samples, on_failure=self._lost)
        self.live = LiveState(scenario.id, design.id, built.run_length, built.time.scale)
        self.display = Display(self.live, out, quiet=options.quiet, origin=self.origin)
        guardrails = GuardrailMonitor(scenario.guardrails, scenario.objectives.availability)
        self.receiver = TraceReceiver(design, port=options.otlp_port or 0) if options.otlp else None
        hold = SPAN_HOLD if options.otlp else 0.0
        self.traffic = Traffic(self.journal, self.display, self.abort, guardrails, span_hold=hold)
        if options.metrics_port is not None:
            self.traffic.metrics = MetricsEndpoint(options.metrics_port, scenario.id, design.id)
        self.active: dict[str, str] = {}
        self.target: Target | None = None
        self.context = ProbeContext(design)
        self.page = None
        if options.web_port is not None:  # subscribed before the first record: the page sees them all
            title = f"bascule · {scenario.id} on {design.id}"
            self.page = RunPage(self.journal, self.abort.set, title, port=options.web_port)

    def _lost(self, exc: OSError) -> None:
        # The journal cannot be written (the disk full): the run is worthless from here on, and ends.
        if not self.abort.is_set:
            why = describe_os_error(exc)
            self.abort.set(f"the journal in {self.run_dir} cannot be written: {why}", ExitCode.TARGET_ERROR)

    # -- the whole run ---------------------------------------------------------------------------

    def execute(self, scoring: Scoring | None) -> RunOutcome:
        self.journal.write(
            "run-started",
            schema="bascule.journal/1",
            bascule=__version__,
            python=sys.version.split()[0],
            machine={"platform": platform.platform(), "cpus": os.cpu_count() or 0},
            scenario=self.scenario.model_dump(mode="json", by_alias=True),
            design=self.design.model_dump(mode="json"),
            plan=plan_to_dict(self.plan),
            options={
                "target": self.options.target.name,
                "load_workers": self.options.load_workers,
                "raw_samples": self.options.raw_samples,
                "otlp": self.options.otlp,
                "otlp_timeline": self.options.otlp_timeline is not None,
            },
        )
        code: int = ExitCode.OK
        reason = "completed"
        with signals(self.abort), self.display.shown():
            try:
                code, reason = self._run()
            except BasculeError as exc:
                code, reason = ExitCode.TARGET_ERROR, str(exc)
                self.journal.write("error", message=reason, durable=True)
            except Exception as exc:  # the rollback below must happen whatever went wrong
                code, reason = ExitCode.TARGET_ERROR, f"{type(exc).__name__}: {exc}"
                self.journal.write("error", message=reason, durable=True)
            finally:
                left = self._shutdown()
        if self.abort.is_set:
            code, reason = self.abort.code, self.abort.reason
        if left is not None:  # faults may still be in force: `bascule recover` must follow
            code, reason = ExitCode.TARGET_ERROR, left
        if scoring is not None and code in (ExitCode.OK, ExitCode.OBJECTIVES_FAILED):
            code, reason = self._score(scoring, code, reason)
        self.journal.write(
            "run-ended",
            durable=True,
            exit_code=int(code),
            reason=reason,
            elapsed=round(time.monotonic() - self.origin, 3),
        )
        self.journal.close()
        if self.page is not None:
            self.page.stop()
        return RunOutcome(int(code), self.run_dir, reason, hurried=self.abort.hurry)

    def _score(self, scoring: Scoring, code: int, reason: str) -> tuple[int, str]:
        try:
            scored = scoring(self.run_dir, code, reason)
        except Exception as exc:  # a run's journal must end even if measuring it fails
            self.journal.write("error", message=f"scoring failed: {type(exc).__name__}: {exc}")
            return code, reason
        if scored.record is None:
            self.journal.write("error", message=scored.note)
        else:
            self.journal.write("score", **scored.record)
            self.display.event(scored.note)
        return scored.exit_code, scored.reason

    def _run(self) -> tuple[int, str]:
        endpoint = None
        if self.receiver is not None:
            self.receiver.start()
            endpoint = self.receiver.endpoint
            self.journal.write("traces-receiver", endpoint=endpoint, traces_url=self.receiver.traces_url)
            self.display.event(f"receiving OpenTelemetry spans at {self.receiver.traces_url}")
        if self.page is not None:
            url = self.page.start()
            self.journal.write("web-page", port=self.page.server.port)  # never the token
            self.display.out.print(f"game-day page: {url}", highlight=False, soft_wrap=True)
        request = StartRequest(
            self.design,
            self.design_path,
            self.run_dir,
            self.display.status,
            otlp_endpoint=endpoint,
            cancel=self.abort.event,
            plan=self.plan,
        )
        started = self.options.target.start(request)
        if isinstance(started, Refusal):
            for refusal in started.phases:
                self.journal.write("refused", message=refusal)
            return started.exit_code, started.reason
        self.target = started
        if self.abort.is_set:
            return self.abort.code, self.abort.reason
        started.subscribe(self._on_target_event)
        self.context = ProbeContext(
            self.design,
            entries=started.entries,
            store_urls=started.store_urls,
            bookkeeping=self.traffic.own_traces.put,
        )
        self.journal.write("target-started", target=self.options.target.name, **started.started_record())
        refusals = started.check(self.plan)
        if refusals:
            for refusal in refusals:
                self.journal.write("refused", message=refusal)
            joined = "; ".join(refusals)
            return ExitCode.INVALID_INPUT, f"the {self.options.target.name} target refuses: {joined}"
        return self._drive(started)

    def _on_target_event(self, event: TargetEvent) -> None:
        fields = dict(event.fields) | {k: round(v - self.origin, 6) for k, v in event.instants.items()}
        self.journal.write(event.record, at=event.at, **fields)
        if event.message is not None:
            self.display.event(event.message)

    def _drive(self, target: Target) -> tuple[int, str]:
        self.scenario = set_up(self.scenario, self.design, self.context.entries, self.journal, self.display)
        self.traffic.start(
            self.context,
            self.scenario,
            self.plan,
            self.design_path,
            load_workers=self.options.load_workers,
            take_hops=target.take_hops,
            poll_spans=None if self.receiver is None else self.receiver.poll,
            impaired=[
                region
                for phase in self.plan.phases
                for region in (*phase.touch.regions, *phase.touch.indirect)
            ],
            take_outside=target.take_outside,
            recorder=target,
        )
        steady = self.scenario.steady_state
        over = 0.0 if steady is None else steady.over
        warm_start = time.monotonic()
        self.live.stage = Stage.WARM_UP.value
        placed = check_before(self.scenario.warm_up, over, 0.0 if steady is None else steady.wait_for)
        self.traffic.pump(warm_start + placed.start)
        if self.abort.is_set:
            return self.abort.code, self.abort.reason
        ctx = (self.scenario, self.context, self.traffic, self.display)
        check = partial(SteadyStateCheck.start, "before", *ctx)
        held = check(wait_up_to=placed.wait).finish(self.traffic, self.journal)
        if not held and placed.start < self.scenario.warm_up and not self.abort.is_set:
            # Judged again from the warm-up's end, where it was before (docs/files.md: why)
            self.traffic.pump(warm_start + self.scenario.warm_up)
            held = check().finish(self.traffic, self.journal)
        if not held:
            if self.abort.is_set:
                return self.abort.code, self.abort.reason
            return ExitCode.TARGET_ERROR, held.failed(FAILED_BEFORE)
        self.traffic.pump(warm_start + self.scenario.warm_up)  # what is left of the warm-up, if any
        if self.abort.is_set:
            return self.abort.code, self.abort.reason
        plan_start = self.traffic.plan_start = time.monotonic()
        self.journal.write("plan-started", durable=True, at=plan_start, run_length=self.plan.run_length)
        done, faults_over = 0, plan_start
        after: SteadyStateCheck | None = None
        while not self.abort.is_set:
            elapsed = time.monotonic() - plan_start
            self.live.elapsed = elapsed
            step = next_step(
                self.plan,
                done,
                elapsed,
                warm_up=0.0,
                settle=self.scenario.settle,
                over=over,
                checking=after is not None,
                faults_over=faults_over - plan_start,
            )
            if isinstance(step, Finish):
                break
            if isinstance(step, DoAction):
                self._act(target, step, plan_start)
                done, faults_over = done + 1, time.monotonic()
                continue
            if isinstance(step, CheckAfter):
                after = SteadyStateCheck.start(
                    "after", self.scenario, self.context, self.traffic, self.display
                )
                continue
            self.live.stage = step.stage.value
            self.traffic.pump(min(plan_start + step.until, time.monotonic() + TICK))
        if self.abort.is_set or after is None:
            return self.abort.code, self.abort.reason
        held = after.finish(self.traffic, self.journal)
        measured = measured_until(self.plan, self.scenario.settle, faults_over - plan_start)
        self.traffic.finish_data(self.context, read_at_least_until=plan_start + measured)
        if not held:
            return ExitCode.OBJECTIVES_FAILED, held.failed(FAILED_AFTER)
        return ExitCode.OK, "completed"

    # -- acting ----------------------------------------------------------------------------------

    def _act(self, target: Target, step: DoAction, plan_start: float) -> None:
        action = step.action
        phase = self.plan.phases[action.phase]
        if action.op is ActionOp.APPLY:
            transition = target.apply(action, phase.touch)
            if self.traffic.sources is not None:
                self.traffic.sources.fault_applied(transition.monotonic)
            self.active[action.key] = f"{phase.kind}@{phase.selector}"
            self.live.phase = phase.name
        else:
            transition = target.revert(action, phase.touch)
            self.active.pop(action.key, None)
        self.live.active_faults = sorted(set(self.active.values()))
        self.traffic.active_faults = len(self.active)
        self.journal.write(
            f"fault-{'applied' if action.op is ActionOp.APPLY else 'reverted'}",
            durable=True,
            at=transition.monotonic,
            phase=action.phase,
            name=phase.name,
            kind=action.fault.kind,
            cycle=action.cycle,
            planned=round(action.offset, 6),
            actual=round(transition.monotonic - plan_start, 6),
            late_by=round(step.late_by, 6),
            took=round(transition.took, 6),
            **transition.journal_fields(),
            **target.transition_fields(),
        )
        self.display.event(f"{action.op.value} {phase.kind} ({phase.name})")

    # -- stopping ----------------------------------------------------------------------------------

    def _shutdown(self) -> str | None:
        """Stop the traffic, roll back and stop the target; what could not be rolled back, if any.
        Aborted, the traffic stops alongside the rollback (a probe waiting on a hung replica ends
        once the hang is reverted); completed, before it, so that no sample sees the target stop."""
        left = None
        stopping = threading.Thread(
            target=self.traffic.stop, kwargs={"hurry": self.abort.hurry}, name="traffic-stop", daemon=True
        )
        stopping.start() if self.abort.is_set else stopping.run()
        try:
            if self.target is not None:
                try:
                    self._roll_back(self.target)
                except Exception as exc:
                    left = f"rolling back: {type(exc).__name__}: {exc}"
                    self.journal.write("error", message=left, durable=True)
                finally:
                    self.target.stop(hurry=self.abort.hurry)
        finally:
            if stopping.ident is not None:
                stopping.join()
        try:
            # After the target stopped: its services flush their last spans as they exit.
            self.traffic.drain_final()
        finally:
            if self.receiver is not None:
                self.receiver.stop()
                self.journal.write("traces-received", **jsonable(self.receiver.counts))
        if self.traffic.metrics is not None:
            self.traffic.metrics.close()
        return left

    def _roll_back(self, target: Target) -> None:
        for transition in target.close():
            self.journal.write(
                "fault-reverted",
                durable=True,
                at=transition.monotonic,
                key=transition.key,
                kind=transition.kind,
                rollback=True,
                **transition.journal_fields(),
                **target.transition_fields(),
            )
