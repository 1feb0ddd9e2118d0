"""How fast an interrupted command lets go: SIGINT and SIGTERM to `bascule run`, `suite`, `compare`
and `stack up`, with both cores kept busy.

For each command and signal, N tries: the command starts (a one-region stack, locust at 4 req/s,
two faults of 120 s in force — a ``hang`` of the store and a ``latency`` of the llm; for ``stack
up``, the stack alone), and once a fault is in force (``stack up``: once the stack is ready) it
gets the signal. Measured from the instant the signal is sent (wall clock, as the ledger writes
it):

- **closed**: the ledger's ``closed`` record — every fault reverted, every process (replicas and
  locust) stopped; **reverted**: the last fault's ``reverted`` record (none for ``stack up``);
- **exit**: the command's exit;

and checked: the exit code (3; ``stack up``: 0), no process left with the run's marker, and, for
``suite`` (two scenarios) and ``compare`` (two designs), that no further run started.

Two bounded busy loops (one per core) run during every try and are stopped at the end: the run
competes for the CPU as on a loaded CI machine. Acceptance of issue 16: reverted (closed) ≤ 2 s
and exit ≤ 5 s at p95, the suite runs no further scenario.

    python bench/shutdown.py                         # 10 tries of each, a table
    python bench/shutdown.py --tries 1 --json        # what tests/test_shutdown_signals.py runs
    python bench/shutdown.py --commands run,suite --signals SIGINT
    python bench/shutdown.py --second 0.2            # a second signal 0.2 s after the first
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bascule.targets.local.ledger import LEDGER_FILE, read_ledger  # noqa: E402
from bascule.targets.local.procfs import find_marked  # noqa: E402

DESIGN = """
id: {id}
title: one region, one replica of each component
regions:
  - id: aws/us-east-1
components:
  gateway: {{replicas: {{aws/us-east-1: 1}}}}
  retriever: {{replicas: {{aws/us-east-1: 1}}}}
  store: {{replicas: {{aws/us-east-1: 1}}}}
  llm: {{replicas: {{aws/us-east-1: 1}}}}
replication: {{mode: none}}
"""

SCENARIO = """
id: {id}
title: two long faults, to be interrupted
design: one.yaml
replay: {{time_scale: 1}}
warm_up: 1s
settle: 1s
phases:
  - {{name: store hangs, at: 0s, for: 120s, fault: {{kind: hang}}, target: {{component: store}}}}
  - {{name: llm slow, at: 0s, for: 120s, fault: {{kind: latency, fixed: 50ms}}, target: {{component: llm}}}}
load: {{rate: 4}}
"""

COMMANDS = ("run", "suite", "compare", "stack-up")
BUSY_LIMIT_S = 3600.0
READY_LIMIT_S = 120.0
EXIT_LIMIT_S = 60.0


@dataclass(frozen=True)
class Try:
    command: str
    signal: str
    exit_code: int | None
    exit_s: float
    closed_s: float | None
    """Signal → the ledger's ``closed`` record (None: never closed)."""
    reverted_s: float | None
    """Signal → the last fault ``reverted`` record (None: no fault was in force)."""
    left: int
    """Processes still carrying the run's marker after the exit."""
    further_runs: int
    """Runs started after the signal (suite, compare)."""
    stdout_tail: str


def _files(work: Path) -> None:
    (work / "one.yaml").write_text(DESIGN.format(id="one"))
    (work / "two.yaml").write_text(DESIGN.format(id="two"))
    (work / "first.yaml").write_text(SCENARIO.format(id="first"))
    (work / "second.yaml").write_text(SCENARIO.format(id="second"))


def _argv(command: str, out: Path) -> list[str]:
    bascule = [sys.executable, "-m", "bascule"]
    match command:
        case "run":
            return [*bascule, "run", "first.yaml", "--quiet", "--out", str(out)]
        case "suite":
            return [*bascule, "suite", "first.yaml", "second.yaml", "--out", str(out)]
        case "compare":
            return [
                *bascule,
                "compare",
                "-d",
                "one.yaml",
                "-d",
                "two.yaml",
                "-s",
                "first.yaml",
                "--out",
                str(out),
            ]
        case "stack-up":
            return [*bascule, "stack", "up", "-d", "one.yaml", "--run-dir", str(out)]
    raise ValueError(command)


def _ledgers(out: Path) -> list[Path]:
    return sorted(out.glob(LEDGER_FILE)) + sorted(out.glob(f"*/{LEDGER_FILE}"))


def _ready(command: str, out: Path) -> bool:
    if command == "stack-up":
        return (out / "stack.json").exists()
    for path in _ledgers(out):
        state = read_ledger(path)
        if state.active:
            return True
    return False


def one_try(work: Path, command: str, sig: signal.Signals, index: int, second: float | None = None) -> Try:
    out = work / f"{command}-{sig.name}-{index}"
    log = work / f"{out.name}.log"
    with log.open("wb") as sink:
        proc = subprocess.Popen(
            _argv(command, out),
            cwd=work,
            stdout=sink,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
        )
    try:
        deadline = time.monotonic() + READY_LIMIT_S
        while not _ready(command, out):
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"{command} never got ready:\n{log.read_text()[-2000:]}")
            time.sleep(0.05)
        time.sleep(0.5)
        ledgers_before = _ledgers(out)
        sent = time.time()
        sent_mono = time.monotonic()
        proc.send_signal(sig)
        if second is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(second)
            if proc.poll() is None:
                proc.send_signal(sig)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(EXIT_LIMIT_S)
        exit_s = time.monotonic() - sent_mono
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    closed_s = reverted_s = None
    left = 0
    for path in ledgers_before:
        state = read_ledger(path)
        text = path.read_text()
        records = [json.loads(line) for line in text.splitlines() if line.strip()]
        closed = [r["at"] for r in records if r.get("type") == "closed"]
        reverted = [r["at"] for r in records if r.get("type") == "reverted" and r["at"] >= sent]
        if closed:
            closed_s = max(closed_s or 0.0, closed[-1] - sent)
        if reverted:
            reverted_s = max(reverted_s or 0.0, max(reverted) - sent)
        if state.run is not None:
            left += len(find_marked(state.run.marker))
    further = len([p for p in _ledgers(out) if p not in ledgers_before])
    return Try(
        command,
        sig.name,
        proc.returncode,
        round(exit_s, 3),
        None if closed_s is None else round(closed_s, 3),
        None if reverted_s is None else round(reverted_s, 3),
        left,
        further,
        log.read_text(errors="replace")[-600:],
    )


def _busy(seconds: float) -> list[subprocess.Popen[bytes]]:
    code = f"import time\nend = time.monotonic() + {seconds}\nwhile time.monotonic() < end:\n    pass\n"
    return [subprocess.Popen([sys.executable, "-c", code]) for _ in range(os.cpu_count() or 2)]


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return math.nan
    rank = max(0, math.ceil(q * len(ordered)) - 1)
    return ordered[rank]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--tries", type=int, default=10)
    parser.add_argument("--commands", default=",".join(COMMANDS))
    parser.add_argument("--signals", default="SIGINT,SIGTERM")
    parser.add_argument("--json", action="store_true", help="One JSON object: every try and the summary.")
    parser.add_argument("--no-busy", action="store_true", help="Leave the cores alone.")
    parser.add_argument(
        "--second", type=float, default=None, help="Send the signal again this many seconds after the first."
    )
    args = parser.parse_args()
    commands = [c for c in args.commands.split(",") if c]
    signals = [signal.Signals[s] for s in args.signals.split(",") if s]
    tries: list[Try] = []
    busy = [] if args.no_busy else _busy(BUSY_LIMIT_S)
    began = time.monotonic()
    try:
        with tempfile.TemporaryDirectory(prefix="bascule-shutdown-") as tmp:
            work = Path(tmp)
            _files(work)
            for index in range(args.tries):
                for command in commands:
                    for sig in signals:
                        done = one_try(work, command, sig, index, args.second)
                        tries.append(done)
                        if not args.json:
                            print(
                                f"{command:9} {sig.name:8} exit {done.exit_code} in {done.exit_s:6.2f} s · "
                                f"closed {done.closed_s} s · reverted {done.reverted_s} s · "
                                f"left {done.left} · further runs {done.further_runs}",
                                flush=True,
                            )
    finally:
        for proc in busy:
            proc.kill()
            proc.wait()
    summary = {}
    for command in commands:
        for sig in signals:
            mine = [t for t in tries if t.command == command and t.signal == sig.name]
            closed = [math.inf if t.closed_s is None else t.closed_s for t in mine]
            exits = [t.exit_s for t in mine]
            summary[f"{command} {sig.name}"] = {
                "tries": len(mine),
                "closed_p50": percentile(closed, 0.5),
                "closed_p95": percentile(closed, 0.95),
                "closed_max": max(closed),
                "exit_p50": percentile(exits, 0.5),
                "exit_p95": percentile(exits, 0.95),
                "exit_max": max(exits),
                "exit_codes": sorted({t.exit_code for t in mine}, key=str),
                "left": sum(t.left for t in mine),
                "further_runs": sum(t.further_runs for t in mine),
            }
    took = time.monotonic() - began
    if args.json:
        print(json.dumps({"tries": [asdict(t) for t in tries], "summary": summary, "seconds": took}))
        return
    print(
        f"\n{'command signal':20} {'tries':>5} {'closed p50/p95/max (s)':>24} "
        f"{'exit p50/p95/max (s)':>22}  codes"
    )
    for name, row in summary.items():
        print(
            f"{name:20} {row['tries']:5} "
            f"{row['closed_p50']:7.2f} {row['closed_p95']:7.2f} {row['closed_max']:7.2f} "
            f"{row['exit_p50']:7.2f} {row['exit_p95']:7.2f} {row['exit_max']:7.2f}  {row['exit_codes']} "
            f"left {row['left']} further {row['further_runs']}"
        )
    again = "" if args.second is None else f", the signal sent again after {args.second:g} s"
    print(f"({took:.0f} s, {'both cores busy' if busy else 'cores left alone'}{again})")


if __name__ == "__main__":
    main()
