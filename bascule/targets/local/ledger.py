"""The undo ledger: an append-only JSONL file in the run directory that outlives a killed run.

What a run started and what it injected is written here, one record a line, each fsynced before
the call returns — and a fault's record before the fault takes effect — so that whatever kills
the run, `bascule recover` (`recover.recover`) finds every process to stop, every port to check
and every fault that was in force:

    {"type": "run", "owner": {"pid": 4242, "start_time": 981234}, "marker": "…", "design": "…", "at": …}
    {"type": "port", "proto": "tcp", "port": 41234, "what": "route clients->gateway@aws-us-east-1", "at": …}
    {"type": "process", "name": "store-aws-us-east-1-0", "pid": 4250, "start_time": 981301, "at": …}
    {"type": "fault", "key": "run-1a2b3c/p0", "kind": "blackhole", "phase": 0, "cycle": null,
     "effects": [{"op": "route", "route": "…", "state": {"mode": "blackhole", …}}], "by": {…}, "at": …}
    {"type": "reverted", "key": "run-1a2b3c/p0", "by": {…}, "at": …}
    {"type": "closed", "at": …}                 the run ended cleanly: everything stopped
    {"type": "recovered", "at": …, "summary": "…"}   `bascule recover` cleaned up after it

Processes are named by PID and kernel start time, so that a reused PID is never taken for one of
the run's. ``by`` names the process that applied a fault: the run itself, or a `bascule inject`
acting on a running stack through its control channel (both append to the same file; each record
is one ``write`` on an ``O_APPEND`` descriptor, so lines never interleave).

`parse_ledger` is pure: text in, `LedgerState` out. A torn last line — the run killed in the
middle of a write — is counted in ``damaged`` and otherwise ignored: the fault it described had
not been applied yet.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any, Final

from bascule.errors import TargetError
from bascule.stack.supervisor import process_start_time
from bascule.targets.ledgerfile import LedgerFile, parse_lines
from bascule.targets.local.effects import Effect, dump_effect, parse_effect
from bascule.targets.local.procfs import process_alive

__all__ = [
    "LEDGER_FILE",
    "ClosedRecord",
    "FaultRecord",
    "Ledger",
    "LedgerState",
    "Owner",
    "PortRecord",
    "ProcessRecord",
    "Record",
    "RecoveredRecord",
    "RevertedRecord",
    "RunRecord",
    "dump_owner",
    "dump_record",
    "parse_ledger",
    "parse_owner",
    "parse_record",
    "read_ledger",
]

LEDGER_FILE: Final = "ledger.jsonl"


@dataclass(frozen=True, slots=True)
class Owner:
    """A process, for good: its PID and its kernel start time."""

    pid: int
    start_time: int

    @staticmethod
    def me() -> Owner:
        return _me(os.getpid())

    def alive(self) -> bool:
        return process_alive(self.pid, self.start_time)


@cache
def _me(pid: int) -> Owner:
    start = process_start_time(pid)
    if start is None:
        raise TargetError("cannot read this process's start time from /proc")
    return Owner(pid, start)


@dataclass(frozen=True, slots=True)
class RunRecord:
    owner: Owner
    marker: str
    """Carried in the environment of every process the run starts (`procfs.MARKER_ENV`)."""
    design: str
    at: float


@dataclass(frozen=True, slots=True)
class ProcessRecord:
    name: str
    pid: int
    start_time: int
    at: float


@dataclass(frozen=True, slots=True)
class PortRecord:
    proto: str
    port: int
    what: str
    at: float


@dataclass(frozen=True, slots=True)
class FaultRecord:
    """A fault's undo record: written before it takes effect (the fault may be in force from
    then on; a record written ahead that was never applied is closed by a ``reverted`` record)."""

    key: str
    kind: str
    phase: int | None
    cycle: int | None
    effects: tuple[Effect, ...]
    by: Owner
    at: float


@dataclass(frozen=True, slots=True)
class RevertedRecord:
    key: str
    by: Owner
    at: float
    note: str = ""


@dataclass(frozen=True, slots=True)
class ClosedRecord:
    at: float


@dataclass(frozen=True, slots=True)
class RecoveredRecord:
    at: float
    summary: str = ""


Record = (
    RunRecord | ProcessRecord | PortRecord | FaultRecord | RevertedRecord | ClosedRecord | RecoveredRecord
)


# -- pure: records to and from JSON lines ---------------------------------------------------------


def dump_record(record: Record) -> str:
    """One line of JSON, without the newline."""
    data: dict[str, Any]
    match record:
        case RunRecord(owner, marker, design, at):
            data = {"type": "run", "owner": dump_owner(owner), "marker": marker, "design": design, "at": at}
        case ProcessRecord(name, pid, start_time, at):
            data = {"type": "process", "name": name, "pid": pid, "start_time": start_time, "at": at}
        case PortRecord(proto, port, what, at):
            data = {"type": "port", "proto": proto, "port": port, "what": what, "at": at}
        case FaultRecord(key, kind, phase, cycle, effects, by, at):
            data = {
                "type": "fault",
                "key": key,
                "kind": kind,
                "phase": phase,
                "cycle": cycle,
                "effects": [dump_effect(e) for e in effects],
                "by": dump_owner(by),
                "at": at,
            }
        case RevertedRecord(key, by, at, note):
            data = {"type": "reverted", "key": key, "by": dump_owner(by), "at": at, "note": note}
        case ClosedRecord(at):
            data = {"type": "closed", "at": at}
        case RecoveredRecord(at, summary):
            data = {"type": "recovered", "at": at, "summary": summary}
    return json.dumps(data, separators=(",", ":"))


def dump_owner(owner: Owner) -> dict[str, int]:
    """An owner as every target's ledger writes it: ``{"pid": …, "start_time": …}``."""
    return {"pid": owner.pid, "start_time": owner.start_time}


def parse_owner(data: Any) -> Owner:
    if not isinstance(data, Mapping):
        raise ValueError(f"an owner is {{pid, start_time}}, got {data!r}")
    return Owner(_int(data, "pid"), _int(data, "start_time"))


def _int(data: Mapping[str, Any], key: str) -> int:
    value = data.get(key)
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{key} must be an integer, got {value!r}")
    return value


def _opt_int(data: Mapping[str, Any], key: str) -> int | None:
    return None if data.get(key) is None else _int(data, key)


def _str(data: Mapping[str, Any], key: str) -> str:
    value = data.get(key)
    if not isinstance(value, str):
        raise ValueError(f"{key} must be a string, got {value!r}")
    return value


def _float(data: Mapping[str, Any], key: str) -> float:
    value = data.get(key)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"{key} must be a number, got {value!r}")
    return float(value)


def parse_record(line: str) -> Record:
    """Raises `ValueError` for a line that is not a ledger record."""
    data = json.loads(line)
    if not isinstance(data, dict):
        raise ValueError("a ledger record is a JSON object")
    kind = data.get("type")
    at = _float(data, "at")
    match kind:
        case "run":
            return RunRecord(parse_owner(data.get("owner")), _str(data, "marker"), _str(data, "design"), at)
        case "process":
            return ProcessRecord(_str(data, "name"), _int(data, "pid"), _int(data, "start_time"), at)
        case "port":
            return PortRecord(_str(data, "proto"), _int(data, "port"), _str(data, "what"), at)
        case "fault":
            effects = data.get("effects")
            if not isinstance(effects, list):
                raise ValueError("a fault record needs a list of effects")
            return FaultRecord(
                key=_str(data, "key"),
                kind=_str(data, "kind"),
                phase=_opt_int(data, "phase"),
                cycle=_opt_int(data, "cycle"),
                effects=tuple(parse_effect(e) for e in effects),
                by=parse_owner(data.get("by")),
                at=at,
            )
        case "reverted":
            return RevertedRecord(
                _str(data, "key"), parse_owner(data.get("by")), at, str(data.get("note", ""))
            )
        case "closed":
            return ClosedRecord(at)
        case "recovered":
            return RecoveredRecord(at, str(data.get("summary", "")))
        case _:
            raise ValueError(f"unknown ledger record type {kind!r}")


@dataclass(frozen=True)
class LedgerState:
    """What a ledger says: the run, what it started, and which faults are still in force."""

    run: RunRecord | None
    processes: tuple[ProcessRecord, ...]
    """Every process the run started (restarts included), each (pid, start time) once."""
    ports: tuple[PortRecord, ...]
    """Every port the run bound, each (proto, port) once."""
    applied: tuple[FaultRecord, ...]
    """Every fault applied, in order."""
    active: tuple[FaultRecord, ...]
    """Faults applied and not reverted, in the order applied."""
    closed: bool
    """The run ended cleanly and stopped everything it started."""
    recovered: bool
    """`bascule recover` cleaned up after the run."""
    damaged: int = 0
    """Lines that could not be read (a torn last write)."""

    @property
    def finished(self) -> bool:
        return self.closed or self.recovered


def parse_ledger(text: str) -> LedgerState:
    run: RunRecord | None = None
    processes: dict[tuple[int, int], ProcessRecord] = {}
    ports: dict[tuple[str, int], PortRecord] = {}
    applied: list[FaultRecord] = []
    active: dict[str, FaultRecord] = {}
    closed = recovered = False
    records, damaged = parse_lines(text, parse_record)
    for record in records:
        match record:
            case RunRecord():
                run = record
            case ProcessRecord():
                processes.setdefault((record.pid, record.start_time), record)
            case PortRecord():
                ports.setdefault((record.proto, record.port), record)
            case FaultRecord():
                applied.append(record)
                active[record.key] = record
            case RevertedRecord():
                active.pop(record.key, None)
            case ClosedRecord():
                closed = True
            case RecoveredRecord():
                recovered = True
    return LedgerState(
        run=run,
        processes=tuple(processes.values()),
        ports=tuple(ports.values()),
        applied=tuple(applied),
        active=tuple(active.values()),
        closed=closed,
        recovered=recovered,
        damaged=damaged,
    )


# -- I/O ------------------------------------------------------------------------------------------


def read_ledger(path: Path) -> LedgerState:
    return parse_ledger(Ledger.read_text(path))


class Ledger(LedgerFile):
    """Appends records to a ledger file, each fsynced before `append` returns. Thread-safe."""

    @classmethod
    def create(cls, path: Path, *, design: str, marker: str) -> Ledger:
        """Start the ledger of a new run at `path`, whose first record names this process.

        A previous ledger there is replaced if its run ended (closed or recovered); otherwise
        `TargetError` says whether that run is still alive or needs `bascule recover`.
        """
        return cls._create(
            path,
            _previous,
            lambda ledger: ledger.append(RunRecord(Owner.me(), marker, design, time.time())),
        )

    def append(self, record: Record) -> None:
        self.append_line(dump_record(record))

    def read(self) -> LedgerState:
        return read_ledger(self.path)


def _previous(path: Path) -> tuple[bool, Owner | None]:
    state = read_ledger(path)
    return state.finished, state.run.owner if state.run else None
