"""``bascule run``: execute a scenario end to end against a target, journal everything, roll back
on every exit path.

Lifecycle: plan (pure) → start the target → start probes and load → warm up → check the
steady-state hypothesis (a system unhealthy before any fault ends the run at once) → carry out the
plan's actions on the monotonic clock, journaling their *actual* instants → settle → check the
hypothesis again → read canary writes back → stop load and probes → revert whatever is still in
force and stop the target. A guardrail, Ctrl-C or SIGTERM aborts: everything is reverted at once
and the journal says why. A second Ctrl-C hurries: processes are killed instead of stopped.

The loop follows ``bascule.runner.engine.next_step`` (decide) and acts; samples from load and
probes arrive on a queue and are folded into 1 s windows that feed the journal, the guardrails and
the live view.
"""

from __future__ import annotations

import os
import platform
import queue
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, is_dataclass
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType
from typing import Any

from rich.console import Console
from rich.live import Live

from bascule import __version__
from bascule.errors import BasculeError, Problem, ScenarioError
from bascule.exit_codes import ExitCode
from bascule.journal import Journal, Window, WindowAggregator
from bascule.journal.samples import RequestSample
from bascule.load import LoadGenerator
from bascule.model.design import Design
from bascule.model.loading import read_design, read_scenario, scenario_design_path
from bascule.model.probes import DataProbe, ProbeSpec, RagProbe
from bascule.model.scenario import Scenario
from bascule.plan import ActionOp, Plan, plan, plan_to_dict
from bascule.probes.base import ProbeContext, make_probes
from bascule.probes.data import DataReport
from bascule.probes.runner import HypothesisResult, ProbeRunner, check_hypothesis, finish_probes
from bascule.probes.sovereignty import SovereigntyJudge, Violation
from bascule.reports.files import grade_journal, report_run
from bascule.runner.engine import DoAction, Finish, Stage, Wait, next_step
from bascule.runner.guardrails import GuardrailMonitor, Trip
from bascule.runner.live import LiveState, render_live
from bascule.runner.metrics_endpoint import MetricsEndpoint
from bascule.stack.layout import ProcessKind
from bascule.targets.local.scaler import ScaleEvent
from bascule.targets.local.stack import LocalStack
from bascule.targets.local.target import LocalTarget

__all__ = ["RunOptions", "RunOutcome", "run_scenario"]

_TICK = 0.1


@dataclass(frozen=True)
class RunOptions:
    scenario: Path
    design: Path | None = None
    out: Path | None = None
    target: str = "local"
    quiet: bool = False
    load_workers: int = 0
    raw_samples: bool = False
    stack_timeout: float = 60.0
    metrics_port: int | None = None
    min_score: float | None = None
    """A completed run whose score is below this exits 1, even if every objective was met."""
    target_file: Path | None = None
    """Kubernetes: the target file mapping the design onto clusters (docs/kubernetes.md)."""
    kubeconfig: Path | None = None
    confirm: tuple[str, ...] = ()
    """Kubernetes: contexts on other machines the user confirmed acting on."""


@dataclass(frozen=True)
class RunOutcome:
    exit_code: int
    run_dir: Path
    reason: str
    reports: tuple[Path, ...] = ()


@dataclass
class _Abort:
    reason: str = ""
    code: int = ExitCode.ABORTED
    hurry: bool = False
    event: threading.Event = field(default_factory=threading.Event)

    def set(self, reason: str, code: int = ExitCode.ABORTED) -> None:
        if self.event.is_set():
            self.hurry = True
            return
        self.reason, self.code = reason, code
        self.event.set()


def default_run_dir(scenario: Scenario, design: Design) -> Path:
    stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    return Path("runs") / f"{stamp}-{scenario.id}-{design.id}"


def load_inputs(options: RunOptions) -> tuple[Scenario, Design, Path, Plan]:
    scenario = read_scenario(options.scenario)
    design_path = options.design or scenario_design_path(options.scenario, scenario)
    if design_path is None:
        raise ScenarioError(
            [Problem("the scenario names no design: pass --design FILE", (), str(options.scenario))]
        )
    design = read_design(design_path)
    if design.entry_component() is not None and scenario.steady_state is None:
        raise ScenarioError(
            [
                Problem(
                    f"{design.id} enters through a service of your own ({design.entry_component()}), "
                    "which bascule has no default probe for: say how to check it in "
                    "steady_state.probes (an http probe with a path, or rag/data probes with their "
                    "request templates; docs/own-services.md)",
                    ("steady_state",),
                    str(options.scenario),
                )
            ]
        )
    return scenario, design, Path(design_path), plan(design, scenario)


@contextmanager
def _signals(abort: _Abort) -> Iterator[None]:
    def handler(signum: int, frame: FrameType | None) -> None:
        abort.set(f"interrupted by {signal.Signals(signum).name}")

    previous = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for s, h in previous.items():
            signal.signal(s, h)


def run_scenario(options: RunOptions, *, console: Console | None = None) -> RunOutcome:
    """Run one scenario; never raises for what happens during the run (it is journaled and turned
    into an exit code), only :class:`ScenarioError` for invalid input before anything starts."""
    scenario, design, design_path, built = load_inputs(options)
    run_dir = options.out or default_run_dir(scenario, design)
    out = console or Console()
    runner = _Runner(
        options,
        scenario=scenario,
        design=design,
        design_path=design_path,
        built=built,
        run_dir=run_dir,
        out=out,
    )
    return runner.execute()


class _Runner:
    def __init__(
        self,
        options: RunOptions,
        *,
        scenario: Scenario,
        design: Design,
        design_path: Path,
        built: Plan,
        run_dir: Path,
        out: Console,
    ) -> None:
        self.options = options
        self.scenario = scenario
        self.design = design
        self.design_path = design_path
        self.plan = built
        self.run_dir = run_dir
        self.out = out
        self.origin = time.monotonic()
        self.journal = Journal(run_dir, self.origin, raw_samples=options.raw_samples)
        self.abort = _Abort()
        self.samples: queue.SimpleQueue[RequestSample] = queue.SimpleQueue()
        self.plan_start: float | None = None
        self.aggregator: WindowAggregator | None = None
        self.guardrails = GuardrailMonitor(scenario.guardrails, scenario.objectives.availability)
        self.live = LiveState(scenario.id, design.id, built.run_length, built.time.scale)
        self.active: dict[str, str] = {}
        self.stack: Any = None
        self.target: Any = None
        self.entries: dict[str, str] = {}
        self.store_urls: dict[str, list[str]] = {}
        self.kube_apis: dict[str, Any] = {}
        self.kube_seen: dict[str, int] = {}
        self.load: Any = None
        self.probes: Any = None
        self.judge: Callable[[RequestSample], list[dict[str, Any]]] | None = None
        self.judge_obj: SovereigntyJudge | None = None
        self.continuous: list[Any] = []
        self.reports: list[Path] = []
        self.metrics = (
            MetricsEndpoint(options.metrics_port, scenario.id, design.id)
            if options.metrics_port is not None
            else None
        )

    # -- the whole run ---------------------------------------------------------------------------

    def execute(self) -> RunOutcome:
        self.journal.write(
            "run-started",
            schema="bascule.journal/1",
            bascule=__version__,
            python=sys.version.split()[0],
            machine={"platform": platform.platform(), "cpus": _cpus()},
            scenario=self.scenario.model_dump(mode="json", by_alias=True),
            design=self.design.model_dump(mode="json"),
            plan=plan_to_dict(self.plan),
            options={
                "target": self.options.target,
                "load_workers": self.options.load_workers,
                "raw_samples": self.options.raw_samples,
            },
        )
        code: int = ExitCode.OK
        reason = "completed"
        with _signals(self.abort), self._view() as refresh:
            self.refresh = refresh
            try:
                code, reason = self._run()
            except BasculeError as exc:
                code, reason = ExitCode.TARGET_ERROR, str(exc)
                self.journal.write("error", message=reason, durable=True)
            except Exception as exc:  # the rollback below must happen whatever went wrong
                code, reason = ExitCode.TARGET_ERROR, f"{type(exc).__name__}: {exc}"
                self.journal.write("error", message=reason, durable=True)
            finally:
                self._shutdown()
        if self.abort.event.is_set():
            code, reason = self.abort.code, self.abort.reason
        if code in (ExitCode.OK, ExitCode.OBJECTIVES_FAILED):
            code, reason = self._score(code, reason)
        self.journal.write(
            "run-ended",
            durable=True,
            exit_code=int(code),
            reason=reason,
            elapsed=round(time.monotonic() - self.origin, 3),
        )
        self.journal.close()
        self._report()
        return RunOutcome(int(code), self.run_dir, reason, tuple(self.reports))

    def _score(self, code: int, reason: str) -> tuple[int, str]:
        """Score the completed run from its journal and journal the score; objectives not met (or
        a score below ``--min-score``) turn a completed run's exit code into 1."""
        try:
            _, graded = grade_journal(self.run_dir)
        except Exception as exc:  # a run's journal must end even if measuring it fails
            self.journal.write("error", message=f"scoring failed: {type(exc).__name__}: {exc}")
            return code, reason
        failing = [d.name for d in graded.dimensions if d.passed is False]
        self.journal.write(
            "score",
            overall=graded.overall,
            grade=None if graded.grade is None else str(graded.grade),
            passed=graded.passed,
            failing=failing,
            unmeasured=list(graded.unmeasured),
            cap=None if graded.cap is None else {"at": graded.cap.at, "reason": graded.cap.reason},
        )
        shown = "—" if graded.overall is None else f"{graded.overall:.1f}"
        self._event(
            f"score {shown}/100, grade {graded.grade or '—'}"
            + (f"; failing: {', '.join(failing)}" if failing else "")
        )
        if code != ExitCode.OK:
            return code, reason
        minimum = self.options.min_score
        if minimum is not None and (graded.overall is None or graded.overall < minimum):
            return ExitCode.OBJECTIVES_FAILED, f"score {shown} is below --min-score {minimum:g}"
        if not graded.passed:
            missed = ", ".join(failing) or "some could not be measured: " + ", ".join(graded.unmeasured)
            return ExitCode.OBJECTIVES_FAILED, f"objectives not met: {missed}"
        return code, reason

    def _report(self) -> None:
        """result.json, summary.md, report.html and the charts, from the closed journal."""
        try:
            _, written = report_run(self.run_dir)
        except Exception as exc:  # the run itself is over and journaled; say so and go on
            self.out.print(
                f"[red]could not write the reports[/red]: {type(exc).__name__}: {exc}", highlight=False
            )
            return
        self.reports = written

    def _on_scale(self, event: ScaleEvent) -> None:
        fields: dict[str, Any] = {"event": event.kind, "region": event.region}
        fields["replicas"] = list(event.replicas)
        if event.due is not None:
            fields["due"] = round(event.due - self.origin, 6)
        self.journal.write("scale-up", at=event.at, **fields)
        self._event(f"scale-up {event.kind}: {event.region} ({len(event.replicas)} replicas)")

    def _run(self) -> tuple[int, str]:
        if self.options.target == "kubernetes":
            refused = self._start_kubernetes()
            if refused is not None:
                return refused
        elif self.options.target == "local":
            self._start_local()
        else:
            return ExitCode.INVALID_INPUT, f"unknown target {self.options.target!r}: local or kubernetes"
        refusals = self.target.check(self.plan)
        if refusals:
            for refusal in refusals:
                self.journal.write("refused", message=refusal)
            return ExitCode.INVALID_INPUT, f"the {self.options.target} target refuses: " + "; ".join(refusals)
        return self._drive()

    def _start_local(self) -> None:
        self._status("starting the stack")
        self.stack = LocalStack.start(
            self.design,
            self.design_path,
            self.run_dir,
            timeout=self.options.stack_timeout,
            progress=self._status,
        )
        self.target = LocalTarget(self.stack)
        if self.stack.scaler is not None:
            self.stack.scaler.subscribe(self._on_scale)
        self.entries = self.stack.entries()
        stores: dict[str, list[str]] = {}
        for replica in self.stack.supervisor.replicas():
            spec = self.stack.replica_spec(replica.spec.name)
            if spec is not None and spec.kind is ProcessKind.STORE and replica.url:
                stores.setdefault(spec.region, []).append(replica.url)
        self.store_urls = stores
        self.journal.write(
            "target-started",
            target="local",
            cold_start=self.stack.timings.ready,
            entries=self.entries,
            dns_port=self.stack.dns.port,
            route_ports=dict(self.stack.route_ports),
            processes=[
                {"name": r.spec.name, "region": r.spec.group, "pid": r.pid, "start_time": r.start_time}
                for r in self.stack.supervisor.replicas()
            ],
        )

    def _start_kubernetes(self) -> tuple[int, str] | None:
        """Map the design onto the clusters, refuse what is not confirmed, start the target's ledger;
        None when the run may go on, else its exit code and reason."""
        # Imported here: the official client takes about a second to import.
        from bascule.targets.kubernetes.cluster import connect, unconfirmed
        from bascule.targets.kubernetes.mapping import bind, read_target
        from bascule.targets.kubernetes.target import KubernetesTarget

        if self.options.target_file is None:
            return ExitCode.INVALID_INPUT, "--target kubernetes needs --target-file (docs/kubernetes.md)"
        try:
            mapping = bind(read_target(self.options.target_file, self.design), self.design)
        except ScenarioError as exc:
            return ExitCode.INVALID_INPUT, str(exc)
        if not mapping.target.entries:
            return ExitCode.INVALID_INPUT, (
                f"{self.options.target_file} gives no `entries`: where do clients reach each region's "
                "service? (docs/kubernetes.md)"
            )
        self._status("connecting to the clusters")
        apis = connect(mapping.target, self.options.kubeconfig)
        missing = unconfirmed({c: a.server for c, a in apis.items()}, self.options.confirm)
        if missing:
            for api in apis.values():
                api.close()
            return ExitCode.INVALID_INPUT, (
                f"acting on {', '.join(missing)} needs --confirm {' --confirm '.join(missing)} "
                "(or BASCULE_CONFIRM_CONTEXTS): they are clusters on other machines"
            )
        self.kube_apis = apis
        self.target = KubernetesTarget.start(
            mapping, apis, self.run_dir, kubeconfig=str(self.options.kubeconfig or "") or None
        )
        self.entries = dict(mapping.target.entries)
        self.store_urls = {r: list(urls) for r, urls in mapping.target.stores.items()}
        self.journal.write(
            "target-started",
            target="kubernetes",
            run_id=self.target.run_id,
            contexts={c: a.server for c, a in apis.items()},
            chaos_mesh={c: sorted(f.chaos) if f else [] for c, f in self.target.facts.items()},
            entries=self.entries,
            api_calls=self._kube_requests(),
        )
        return None

    def _kube_requests(self) -> list[list[str]]:
        """Every Kubernetes API request made since the last call: [method, path, context]."""
        out: list[list[str]] = []
        for api in self.kube_apis.values():
            seen = self.kube_seen.get(api.context, 0)
            out += [list(call) for call in api.made[seen:]]
            self.kube_seen[api.context] = len(api.made)
        return out

    def _drive(self) -> tuple[int, str]:
        self.aggregator = WindowAggregator(origin=self.origin, grace=1.0)
        self._start_traffic()
        self.live.stage = Stage.WARM_UP.value
        self._pump(time.monotonic() + self.scenario.warm_up)
        if self.abort.event.is_set():
            return self.abort.code, self.abort.reason
        if not self._hypothesis("before"):
            return ExitCode.TARGET_ERROR, "the steady-state hypothesis failed before any fault"
        plan_start = self.plan_start = time.monotonic()
        self.journal.write("plan-started", durable=True, at=plan_start, run_length=self.plan.run_length)
        done = 0
        while not self.abort.event.is_set():
            elapsed = time.monotonic() - plan_start
            self.live.elapsed = elapsed
            step = next_step(self.plan, done, elapsed, warm_up=0.0, settle=self.scenario.settle)
            if isinstance(step, Finish):
                break
            if isinstance(step, DoAction):
                self._act(step)
                done += 1
                continue
            assert isinstance(step, Wait)
            self.live.stage = step.stage.value
            self._pump(min(plan_start + step.until, time.monotonic() + _TICK))
        if self.abort.event.is_set():
            return self.abort.code, self.abort.reason
        after = self._hypothesis("after")
        self._finish_data()
        if not after:
            return ExitCode.OBJECTIVES_FAILED, "the steady-state hypothesis failed after rollback"
        return ExitCode.OK, "completed"

    # -- acting ----------------------------------------------------------------------------------

    def _act(self, step: DoAction) -> None:
        action = step.action
        phase = self.plan.phases[action.phase]
        if action.op is ActionOp.APPLY:
            transition = self.target.apply(action, phase.touch)
            self.active[action.key] = f"{phase.kind}@{phase.selector}"
            self.live.phase = phase.name
        else:
            transition = self.target.revert(action, phase.touch)
            self.active.pop(action.key, None)
        self.live.active_faults = sorted(set(self.active.values()))
        extra: dict[str, Any] = {"api_calls": self._kube_requests()} if self.kube_apis else {}
        self.journal.write(
            f"fault-{'applied' if action.op is ActionOp.APPLY else 'reverted'}",
            durable=True,
            at=transition.monotonic,
            phase=action.phase,
            name=phase.name,
            kind=action.fault.kind,
            cycle=action.cycle,
            planned=round(action.offset, 6),
            actual=round(transition.monotonic - (self.plan_start or self.origin), 6),
            late_by=round(step.late_by, 6),
            took=round(transition.took, 6),
            effects=list(transition.effects),
            **extra,
        )
        self._event(f"{action.op.value} {phase.kind} ({phase.name})")

    # -- samples -----------------------------------------------------------------------------------

    def _on_sample(self, sample: RequestSample) -> None:
        self.samples.put(sample)

    def _pump(self, until: float) -> None:
        """Process samples and windows until ``until`` (monotonic), or an abort."""
        while True:
            self._drain()
            now = time.monotonic()
            if now >= until or self.abort.event.is_set():
                return
            self.refresh()
            self.abort.event.wait(min(_TICK, until - now))

    def _drain(self) -> None:
        if self.load is not None:
            for sample in self.load.poll():
                self.samples.put(sample)
        batch: list[RequestSample] = []
        while True:
            try:
                batch.append(self.samples.get_nowait())
            except queue.Empty:
                break
        violations = 0
        for sample in batch:
            self.journal.sample(sample)
            if self.aggregator is not None:
                self.aggregator.add(sample)
            if self.judge is not None:
                for violation in self.judge(sample):
                    violations += 1
                    self.journal.write("sovereignty-violation", at=sample.started, **violation)
        if violations:
            self.live.violations += violations
            if self.metrics is not None:
                self.metrics.add_violations(violations)
            self._trip(
                self.guardrails.observe_violations(violations, time.monotonic() - (self.plan_start or 0))
            )
        if self.aggregator is not None:
            for window in self.aggregator.close_before(time.monotonic()):
                self._close_window(window)

    def _close_window(self, window: Window) -> None:
        self.journal.window(window)
        self.live.recent.append(window)
        if self.metrics is not None:
            self.metrics.observe(window, active_faults=len(self.active), elapsed=self.live.elapsed)
        self._trip(self.guardrails.observe(window))

    def _trip(self, trip: Trip | None) -> None:
        if trip is None or self.abort.event.is_set():
            return
        self.journal.write(
            "guardrail-tripped",
            durable=True,
            guardrail=trip.guardrail,
            reason=trip.reason,
            window_end=trip.at,
        )
        self._event(f"guardrail {trip.guardrail}: {trip.reason}")
        self.abort.set(f"guardrail {trip.guardrail}: {trip.reason}", ExitCode.ABORTED)

    # -- load and probes ----------------------------------------------------------------------------

    def _context(self) -> ProbeContext:
        return ProbeContext(self.design, entries=self.entries, store_urls=self.store_urls)

    def _continuous_specs(self) -> list[ProbeSpec]:
        """The steady-state probes, or a golden question per servable data class; plus canary writes,
        so that lost acknowledged writes (RPO) are measured in every run."""
        if self.scenario.steady_state is not None:
            specs: list[ProbeSpec] = list(self.scenario.steady_state.probes)
        else:
            servable = [c for c in self.design.data_classes if self.design.allowed_regions(c)]
            chosen = [c for c in servable if c in ("internal", "confidential")] or servable[:1]
            specs = [RagProbe(data_class=c) for c in chosen]
        own = self.design.entry_component() is not None
        if not own and self.store_urls and not any(isinstance(s, DataProbe) for s in specs):
            # An own service's writes take a request template only its author can give.
            specs.append(DataProbe(data_class="internal"))
        return specs

    def _start_traffic(self) -> None:
        context = self._context()
        judge = self.judge_obj = SovereigntyJudge(self.design)
        self.judge = lambda sample: [_violation_json(v) for v in judge.observe(sample)]
        self.continuous = make_probes(self._continuous_specs(), context)
        self.probes = ProbeRunner(self.continuous, context, on_sample=self._on_sample)
        self.probes.start()
        names = ", ".join(p.name for p in self.continuous)
        self.journal.write("probes-started", probes=[p.name for p in self.continuous])
        self._status(f"probes running: {names}")
        if self.scenario.load is not None:
            over = self.scenario.steady_state.over if self.scenario.steady_state else 0.0
            duration = self.scenario.warm_up + 2 * over + self.plan.run_length + self.scenario.settle + 10.0
            # Locust takes a few seconds to start: its clock starts a little ahead, within the warm-up.
            lead = min(3.0, self.scenario.warm_up)
            self.load = LoadGenerator.start(
                self.design_path,
                self.entries,
                self.scenario.load,
                duration - lead,
                self.run_dir,
                workers=self.options.load_workers,
                origin=time.monotonic() + lead,
            )
            self.journal.write("load-started", pids=[list(p) for p in self.load.pids()], duration=duration)
            self._status(
                f"load running ({self.scenario.load.users or self.scenario.load.rate} "
                f"{'users' if self.scenario.load.users else 'req/s'})"
            )

    def _hypothesis(self, when: str) -> bool:
        steady = self.scenario.steady_state
        if steady is None:
            self.journal.write("hypothesis", when=when, ok=True, skipped=True)
            return True
        self._status(f"checking the steady-state hypothesis ({when})")
        probes = make_probes(steady.probes, self._context())
        box: dict[str, HypothesisResult] = {}
        worker = threading.Thread(
            target=lambda: box.update(
                result=check_hypothesis(probes, probes[0].context, steady.over, steady.success_ratio)
            ),
            name="bascule-hypothesis",
            daemon=True,
        )
        worker.start()
        while worker.is_alive() and not self.abort.event.is_set():
            self._pump(time.monotonic() + _TICK)
            worker.join(0)
        result = box.get("result")
        if result is None:
            return False
        self.journal.write(
            "hypothesis",
            durable=True,
            when=when,
            ok=result.ok,
            summary=result.summary(),
            failures=[str(f) for f in result.failures[:20]],
        )
        if result.ok:
            self._event(result.summary())
        else:  # also the live view's stage, so that a failed hypothesis stays on screen
            self._status(result.summary())
        return result.ok

    def _finish_data(self) -> None:
        self._status("reading canary writes back from every region")
        reports = finish_probes(self.continuous, self._context())
        for name, report in reports.items():
            if isinstance(report, DataReport):
                self.journal.write("data-report", durable=True, probe=name, **_jsonable(report))
        if self.judge_obj is not None:
            self.journal.write("sovereignty-report", durable=True, **_jsonable(self.judge_obj.report()))

    # -- stopping ----------------------------------------------------------------------------------

    def _shutdown(self) -> None:
        hurry = self.abort.hurry
        try:
            if self.load is not None:
                self.load.stop(timeout=0.5 if hurry else 3.0)
        except Exception as exc:
            self.journal.write("error", message=f"stopping the load: {exc}")
        try:
            if self.probes is not None:
                self.probes.stop()
        except Exception as exc:
            self.journal.write("error", message=f"stopping the probes: {exc}")
        if self.target is not None:
            for transition in self.target.close():
                extra: dict[str, Any] = {"api_calls": self._kube_requests()} if self.kube_apis else {}
                self.journal.write(
                    "fault-reverted",
                    durable=True,
                    at=transition.monotonic,
                    key=transition.key,
                    kind=transition.kind,
                    rollback=True,
                    effects=list(transition.effects),
                    **extra,
                )
        if self.kube_apis:
            left = self._kube_requests()
            if left:
                self.journal.write("kubernetes-calls", api_calls=left)
            for api in self.kube_apis.values():
                api.close()
        if self.stack is not None:
            self.stack.stop(timeout=0.5 if hurry else 3.0)
        self._drain_final()
        if self.metrics is not None:
            self.metrics.close()

    def _drain_final(self) -> None:
        self._drain()
        if self.aggregator is not None:
            for window in self.aggregator.close_all():
                self.journal.window(window)

    # -- display -----------------------------------------------------------------------------------

    def _status(self, message: str) -> None:
        self.live.stage = message
        self._event(message)

    def _event(self, message: str) -> None:
        """In the live view's last events; a line of its own with ``--quiet`` (CI logs)."""
        self.live.note(message)
        if self.options.quiet:
            self.out.print(
                f"[{time.monotonic() - self.origin:6.1f}s] {message}", highlight=False, soft_wrap=True
            )

    @contextmanager
    def _view(self) -> Iterator[Callable[[], None]]:
        if self.options.quiet or not self.out.is_terminal:
            yield lambda: None
            return
        with Live(render_live(self.live), console=self.out, refresh_per_second=4, transient=False) as live:
            yield lambda: live.update(render_live(self.live))


def _violation_json(violation: Violation) -> dict[str, Any]:
    return {
        "request_id": violation.request_id,
        "source": violation.source,
        "data_class": violation.data_class,
        "hop": asdict(violation.hop),
        "minimum": violation.minimum.value,
        "level": violation.level.value,
    }


def _jsonable(value: object) -> dict[str, Any]:
    data = asdict(value) if is_dataclass(value) and not isinstance(value, type) else {"value": value}
    clean = _plain(data)
    assert isinstance(clean, dict)
    return clean


def _key(key: object) -> str:
    return "/".join(map(str, key)) if isinstance(key, tuple) else str(key)


def _plain(value: object) -> object:
    """JSON-ready: keys as strings (tuples joined with '/'), enums as values, tuples as lists."""
    if isinstance(value, dict):
        return {_key(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [_plain(v) for v in value]
    if isinstance(value, str | int | float | bool) or value is None:
        return value  # a StrEnum member is a str and serialises as its value
    return str(value)


def _cpus() -> int:
    return os.cpu_count() or 0
