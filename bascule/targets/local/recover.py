"""`bascule recover RUN_DIR`: clean up after a local run that was killed, from its undo ledger.

A run killed by SIGKILL (or a crash, or a power cut short of the disk) leaves behind what it
recorded in its ledger (`ledger`):

- **processes** — every replica and load generator process it started runs in a session of its
  own and survives it. Each one recorded with a start time that its PID still has, and each live
  process carrying the run's marker in its environment (one started in the instant before its
  record was written, or forked just before the run died and still starting: the scan is repeated
  until no new one has appeared for a second), is sent SIGCONT (it may have been paused by a
  ``hang``) and SIGTERM, then SIGKILL after a grace period. A PID whose start time differs
  belongs to an unrelated process: it is never signalled.
- **faults** — the proxy, DNS and control-plane states lived in the killed process and ended
  with it; the report lists the faults that were in force, and says so. A ``data-loss`` cannot be
  undone: the report says which stores were wiped.
- **ports** — every port the run recorded is checked against ``/proc/net``; any still bound is
  reported.

When the run itself is still alive (a `bascule stack up` whose `bascule inject` was killed), its
processes are left alone and only the faults whose injector died are reverted, through the
stack's control channel. Recovering twice does no harm: the second pass finds nothing to do.
"""

from __future__ import annotations

import signal
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path

import httpx

from bascule.errors import TargetError
from bascule.targets.local.control import ControlClient, ControlError
from bascule.targets.local.effects import Pause, Wipe, describe_effect
from bascule.targets.local.ledger import (
    LEDGER_FILE,
    FaultRecord,
    Ledger,
    LedgerState,
    Owner,
    RecoveredRecord,
    RevertedRecord,
    read_ledger,
)
from bascule.targets.local.procfs import bound_ports, find_marked, process_alive, signal_process
from bascule.targets.local.stack import STATE_FILE, read_state

__all__ = ["FaultNote", "FaultOutcome", "ProcessNote", "ProcessOutcome", "RecoverReport", "recover"]

_POLL_S = 0.05
_QUIET_S = 1.0
"""After the first pass, marked processes are looked for again until none has appeared for this long."""


class FaultOutcome(StrEnum):
    ENDED_WITH_RUN = "ended-with-run"
    """Its state lived in the run's process, which is gone."""
    REVERTED = "reverted"
    """Reverted through the live stack's control channel."""
    HELD_BY_LIVE_INJECTOR = "held-by-live-injector"
    """Its owner is alive and will revert it."""
    NOT_REVERTED = "not-reverted"


class ProcessOutcome(StrEnum):
    TERMINATED = "terminated"
    """SIGTERM sufficed."""
    KILLED = "killed"
    """It outlived the grace period and was sent SIGKILL."""
    ALIVE = "alive"
    """Still running after SIGKILL."""


@dataclass(frozen=True)
class FaultNote:
    key: str
    kind: str
    outcome: FaultOutcome
    message: str


@dataclass(frozen=True)
class ProcessNote:
    name: str
    pid: int
    outcome: ProcessOutcome


@dataclass(frozen=True)
class RecoverReport:
    run_dir: Path
    owner_pid: int | None
    owner_alive: bool
    previously: str | None
    """``closed`` or ``recovered`` when the ledger already said the run was cleaned up."""
    faults: tuple[FaultNote, ...] = ()
    processes: tuple[ProcessNote, ...] = ()
    ports_bound: tuple[tuple[str, int], ...] = ()
    notes: tuple[str, ...] = field(default=())

    @property
    def clean(self) -> bool:
        """No process of the run left alive, no port of it bound, no fault left in force."""
        return (
            not self.ports_bound
            and all(p.outcome is not ProcessOutcome.ALIVE for p in self.processes)
            and all(f.outcome is not FaultOutcome.NOT_REVERTED for f in self.faults)
        )

    def lines(self) -> list[str]:
        """The report for a terminal, one line per finding."""
        out = [f"run directory {self.run_dir}"]
        if self.owner_alive:
            out.append(f"the run (pid {self.owner_pid}) is still alive: its processes were left alone")
        elif self.previously:
            out.append(f"the ledger says the run was already {self.previously}")
        out += [f"fault {f.key} ({f.kind}): {f.message}" for f in self.faults]
        out += [f"process {p.name} (pid {p.pid}): {p.outcome.value}" for p in self.processes]
        out += [f"port {proto}/{port} is still bound" for proto, port in self.ports_bound]
        out += list(self.notes)
        if not self.clean:
            out.append("NOT clean: see above")
        elif self.owner_alive:
            out.append("nothing left behind by a dead process")
        else:
            out.append("clean: nothing of the run is left")
        return out


def _stop_processes(targets: dict[tuple[int, int], str], grace: float) -> list[ProcessNote]:
    live = {k: name for k, name in targets.items() if process_alive(*k)}
    for pid, start in live:
        signal_process(pid, start, signal.SIGCONT)
        signal_process(pid, start, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while any(process_alive(*k) for k in live) and time.monotonic() < deadline:
        time.sleep(_POLL_S)
    forced = [k for k in live if process_alive(*k)]
    for pid, start in forced:
        signal_process(pid, start, signal.SIGKILL)
    deadline = time.monotonic() + 2.0
    while any(process_alive(*k) for k in forced) and time.monotonic() < deadline:
        time.sleep(_POLL_S)
    notes: list[ProcessNote] = []
    for (pid, start), name in live.items():
        if process_alive(pid, start):
            outcome = ProcessOutcome.ALIVE
        elif (pid, start) in forced:
            outcome = ProcessOutcome.KILLED
        else:
            outcome = ProcessOutcome.TERMINATED
        notes.append(ProcessNote(name, pid, outcome))
    return notes


def _stop_late_starters(marker: str, seen: set[tuple[int, int]], grace: float) -> list[ProcessNote]:
    """Stop the run's processes that carried its marker only after the first pass.

    A child the run forked just before it died shows the run's own environment (without the
    marker) until it executes its program: in that instant neither the ledger nor a scan of
    ``/proc`` finds it, and a moment later it is a replica or a locust process with no parent.
    Such a child executes within milliseconds, so the scan is repeated until none has appeared
    for `_QUIET_S` (bounded by ten times that)."""
    notes: list[ProcessNote] = []
    began = time.monotonic()
    quiet_until = began + _QUIET_S
    while time.monotonic() < min(quiet_until, began + 10 * _QUIET_S):
        time.sleep(_POLL_S)
        late = {k: "(unrecorded)" for k in find_marked(marker) if k not in seen}
        if late:
            seen |= late.keys()
            notes += _stop_processes(late, grace)
            quiet_until = time.monotonic() + _QUIET_S
    return notes


def _dead_run_fault(record: FaultRecord, owner: Owner) -> FaultNote:
    wiped = [e.replica for e in record.effects if isinstance(e, Wipe)]
    paused = [e.replica for e in record.effects if isinstance(e, Pause)]
    held = [describe_effect(e) for e in record.effects if not isinstance(e, Wipe)]
    parts: list[str] = []
    if held:
        parts.append(
            f"was in force ({len(held)} effect(s)); its proxy, DNS and control-plane state lived in "
            f"the run's process (pid {owner.pid}) and ended with it"
        )
    if paused:
        parts.append(f"paused processes ({', '.join(paused)}) were resumed before being stopped")
    if wiped:
        parts.append(f"cannot be undone: store(s) {', '.join(wiped)} were wiped")
    return FaultNote(
        record.key, record.kind, FaultOutcome.ENDED_WITH_RUN, "; ".join(parts) or "had no effect"
    )


def _revert_orphans(run_dir: Path, state: LedgerState, owner: Owner) -> list[FaultNote]:
    """Faults applied on a live stack by a process that has died since: reverted over the channel."""
    notes: list[FaultNote] = []
    orphans = [r for r in state.active if r.by != owner and not r.by.alive()]
    for record in state.active:
        if record.by != owner and record.by.alive():
            notes.append(
                FaultNote(
                    record.key,
                    record.kind,
                    FaultOutcome.HELD_BY_LIVE_INJECTOR,
                    f"held by pid {record.by.pid}, which is alive and will revert it",
                )
            )
    if not orphans:
        return notes
    control = read_state(run_dir).get("control")
    if not isinstance(control, dict):
        return notes + [
            FaultNote(
                r.key,
                r.kind,
                FaultOutcome.NOT_REVERTED,
                "the stack has no control channel to revert it through",
            )
            for r in orphans
        ]
    me = Owner.me()
    with (
        ControlClient(str(control["url"]), str(control["token"])) as client,
        Ledger.open(run_dir / LEDGER_FILE) as ledger,
    ):
        for record in orphans:
            try:
                client.revert_fault(record.key)
            except (ControlError, httpx.HTTPError) as exc:
                notes.append(FaultNote(record.key, record.kind, FaultOutcome.NOT_REVERTED, str(exc)))
                continue
            ledger.append(RevertedRecord(record.key, me, time.time(), note="reverted by bascule recover"))
            message = f"reverted (its injector, pid {record.by.pid}, had died)"
            if any(isinstance(e, Wipe) for e in record.effects):
                message += "; the stores it wiped stay empty"
            notes.append(FaultNote(record.key, record.kind, FaultOutcome.REVERTED, message))
    return notes


def _summary(report: RecoverReport) -> str:
    stopped = sum(p.outcome is not ProcessOutcome.ALIVE for p in report.processes)
    bound = len(report.ports_bound)
    return f"{len(report.faults)} fault(s), {stopped} process(es) stopped, {bound} port(s) bound"


def recover(run_dir: Path, *, grace: float = 3.0) -> RecoverReport:
    """Clean up what the run recorded in ``run_dir/ledger.jsonl`` left behind (module docstring).

    Raises `TargetError` when there is no ledger. Returns the report; `RecoverReport.clean` says
    whether anything of the run is left.
    """
    path = run_dir / LEDGER_FILE
    state = read_ledger(path)
    if state.run is None:
        raise TargetError(f"{path} names no run (its first record is missing or damaged)")
    owner = state.run.owner
    previously = "closed" if state.closed else "recovered" if state.recovered else None
    if owner.alive() and not state.finished:
        faults = _revert_orphans(run_dir, state, owner)
        return RecoverReport(run_dir, owner.pid, True, previously, faults=tuple(faults))

    faults = [] if state.finished else [_dead_run_fault(r, owner) for r in state.active]
    targets: dict[tuple[int, int], str] = {(p.pid, p.start_time): p.name for p in state.processes}
    for pid, start in find_marked(state.run.marker):
        targets.setdefault((pid, start), "(unrecorded)")
    processes = _stop_processes(targets, grace)
    if not state.finished:
        processes += _stop_late_starters(state.run.marker, set(targets), grace)
    ports = bound_ports((p.proto, p.port) for p in state.ports)
    notes = _notes(state, ports)
    report = RecoverReport(
        run_dir,
        owner.pid,
        False,
        previously,
        faults=tuple(faults),
        processes=tuple(processes),
        ports_bound=tuple(ports),
        notes=tuple(notes),
    )
    (run_dir / STATE_FILE).unlink(missing_ok=True)
    if not state.finished:
        with Ledger.open(path) as ledger:
            ledger.append(RecoveredRecord(time.time(), _summary(report)))
    return report


def _notes(state: LedgerState, ports: Iterable[tuple[str, int]]) -> list[str]:
    notes: list[str] = []
    if state.damaged:
        notes.append(
            f"{state.damaged} ledger line(s) could not be read (a write cut short by the kill); "
            "a fault whose record was cut short had not been applied"
        )
    if list(ports):
        notes.append(
            "a port still bound may belong to another program that took it after the run died; "
            "`ss -ltnp` names its owner"
        )
    return notes
