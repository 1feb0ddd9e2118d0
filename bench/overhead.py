"""Benchmark of bascule's own time per run: what a user waits for beyond the plan, the warm-up and
the settle time the scenario asks for.

Runs, as a user would (`bascule run`, `bascule suite`, each a fresh process with a fresh stack),
the README's main job — the AWS us-east-1 2025-10-20 replay against its design — and/or a suite of
four fault scenarios on the reference design, then reads each run's journal back and breaks its
wall time down by stage:

- ``before run-started``: the interpreter, imports, loading and planning (process start → the
  journal's first record, by the wall clock);
- ``stack start``: run-started → target-started (DNS, routes, the stack's processes, readiness);
- ``traffic start``: target-started → load-started (probes, then the locust processes);
- ``warm-up`` (the scenario's), then ``hypothesis before``: the warm-up's end → the check's record
  (the check runs over the warm-up's last ``over`` seconds: what is left here is its last samples'
  answers; before that placement, its whole window);
- ``plan`` and ``settle`` (the scenario's), then ``hypothesis after``: the settle's end → the
  check's record (its window is the settle's last ``over`` seconds once the impact window ended:
  what is left is the part past the settle's end and its last samples' answers);
- ``canary read-back``: hypothesis after → data-report;
- ``teardown``: data-report → the last record before ``score`` (traffic stopped, faults rolled
  back, the stack stopped, the last hops and spans drained);
- ``scoring``: → the ``score`` record; ``reports``: run-ended → the process's exit (result.json,
  summary.md, report.html, the PNG charts).

For the suite, each stage is summed over its runs, and two more stand for what happens between
them: ``before each run-started`` (the process's start and imports before the first run; between
runs, one run's reports and the next one's loading and planning) and ``after the last run-ended``
(the last run's reports, the suite's own, the process's exit).

Overhead = wall − warm-up − plan − settle. The issue's goal for the main job: ≤ 8 s. All figures
are wall time on the machine the bench runs on: on a shared one, say so beside them.

    python bench/overhead.py                 # the main job once
    python bench/overhead.py --suite         # the 4-scenario suite once
    python bench/overhead.py --both --repeat 3 --json
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
MAIN_JOB = ROOT / "scenarios" / "incidents" / "aws-us-east-1-2025-10-20.yaml"
SUITE = [
    ROOT / "scenarios" / "faults" / f"{kind}.yaml" for kind in ("crash", "latency", "http-error", "hang")
]
SUITE_DESIGN = ROOT / "designs" / "active-passive-sovereign.yaml"
GOAL_MAIN_S = 8.0
TIMEOUT_S = 900.0


@dataclass(frozen=True)
class Stages:
    """One run's wall time, stage by stage (seconds); ``None`` where the journal lacks the record."""

    run_dir: str
    exit_code: int | None
    planned: dict[str, float]
    measured: dict[str, float | None]

    @property
    def tool(self) -> float:
        """Everything but the planned stages."""
        return sum(v for v in self.measured.values() if v is not None)


def _records(run_dir: Path) -> list[dict[str, Any]]:
    sys.path.insert(0, str(ROOT))
    from bascule.journal import read_journal

    return [r for r in read_journal(run_dir) if r.get("type") not in ("sample", "window")]


def stages(run_dir: Path, process_started: float, process_ended: float | None) -> Stages:
    """The stages of the run journaled in ``run_dir``. ``process_started`` / ``process_ended``:
    wall-clock instants (``time.time()``) of the process that ran it; ``process_ended`` ``None``
    when the process went on to other runs (a suite's runs but the last)."""
    records = _records(run_dir)
    first: dict[str, dict[str, Any]] = {}
    for r in records:
        key = r["type"] if r["type"] != "hypothesis" else f"hypothesis-{r.get('when')}"
        first.setdefault(key, r)

    def t(kind: str) -> float | None:
        r = first.get(kind)
        return None if r is None else float(r["t"])

    started = first["run-started"]
    scenario = started.get("scenario") or {}
    warm_up = float(scenario.get("warm_up") or 0.0)
    settle = float(scenario.get("settle") if scenario.get("settle") is not None else 10.0)
    run_length = float(started["plan"]["time"]["run_length_s"])
    started_wall = datetime.fromisoformat(started["wall"]).timestamp() - float(started["t"])
    ended = first.get("run-ended")

    def span(a: float | None, b: float | None) -> float | None:
        return None if a is None or b is None else round(b - a, 3)

    traffic = max((x for x in (t("probes-started"), t("load-started")) if x is not None), default=None)
    warm_end = None if traffic is None else traffic + warm_up
    plan_end = None if t("plan-started") is None else t("plan-started") + run_length + settle  # type: ignore[operator]
    score_t = t("score")
    before_score = [float(r["t"]) for r in records if score_t is not None and float(r["t"]) < score_t]
    teardown_end = max(before_score, default=None)
    measured = {
        "before run-started": round(started_wall - process_started, 3),
        "stack start": span(0.0, t("target-started")),
        "traffic start": span(t("target-started"), traffic),
        "hypothesis before": span(warm_end, t("hypothesis-before")),
        "hypothesis after": span(plan_end, t("hypothesis-after")),
        "canary read-back": span(t("hypothesis-after"), t("data-report")),
        "teardown": span(t("data-report"), teardown_end),
        "scoring": span(teardown_end, score_t),
        "reports": None
        if process_ended is None or ended is None
        else round(process_ended - (started_wall + float(ended["t"])), 3),
    }
    # What the stages above leave out: the gap between the hypothesis before and the plan's start.
    measured["other"] = span(t("hypothesis-before"), t("plan-started"))
    return Stages(
        str(run_dir),
        None if ended is None else int(ended.get("exit_code", -1)),
        {"warm-up": warm_up, "plan": run_length, "settle": settle},
        measured,
    )


def _wall_bounds(run_dir: Path) -> tuple[float, float]:
    """Wall-clock instants of a run's ``run-started`` and ``run-ended`` records."""
    records = _records(run_dir)
    started = next(r for r in records if r["type"] == "run-started")
    ended = next((r for r in records if r["type"] == "run-ended"), records[-1])
    origin = datetime.fromisoformat(started["wall"]).timestamp() - float(started["t"])
    return origin + float(started["t"]), origin + float(ended["t"])


def _env() -> dict[str, str]:
    """This tree's bascule, whatever is installed."""
    path = os.environ.get("PYTHONPATH")
    return {**os.environ, "PYTHONPATH": str(ROOT) + (os.pathsep + path if path else "")}


def _bascule(*args: str) -> list[str]:
    return [sys.executable, "-m", "bascule", *args]


def run_main_job(out: Path) -> dict[str, Any]:
    run_dir = out / "main"
    began = time.time()
    done = subprocess.run(
        _bascule("run", str(MAIN_JOB), "--out", str(run_dir), "--quiet"),
        capture_output=True,
        text=True,
        timeout=TIMEOUT_S,
        check=False,
        cwd=out,
        env=_env(),
    )
    ended = time.time()
    s = stages(run_dir, began, ended)
    wall = round(ended - began, 3)
    planned = sum(s.planned.values())
    return {
        "job": "main",
        "exit_code": done.returncode,
        "wall_s": wall,
        "planned_s": planned,
        "overhead_s": round(wall - planned, 3),
        "stages": s.measured,
        "goal_s": GOAL_MAIN_S,
    }


def run_suite(out: Path) -> dict[str, Any]:
    suite_dir = out / "suite"
    began = time.time()
    done = subprocess.run(
        _bascule("suite", *map(str, SUITE), "--design", str(SUITE_DESIGN), "--out", str(suite_dir)),
        capture_output=True,
        text=True,
        timeout=TIMEOUT_S,
        check=False,
        cwd=out,
        env=_env(),
    )
    ended = time.time()
    journals = sorted(suite_dir.rglob("journal.jsonl"), key=lambda p: p.stat().st_mtime)
    runs = [stages(j.parent, began, None) for j in journals]
    bounds = [_wall_bounds(j.parent) for j in journals]
    planned = sum(sum(s.planned.values()) for s in runs)
    wall = round(ended - began, 3)
    per_stage: dict[str, float] = {}
    for s in runs:
        for name, value in s.measured.items():
            if value is not None and name != "before run-started":
                per_stage[name] = round(per_stage.get(name, 0.0) + value, 3)
    # Between one run's end and the next one's start: its reports, then the next run's loading.
    if bounds:
        per_stage["before each run-started"] = round(
            bounds[0][0] - began + sum(b[0] - a[1] for a, b in itertools.pairwise(bounds)), 3
        )
        per_stage["after the last run-ended"] = round(ended - bounds[-1][1], 3)
    return {
        "job": "suite",
        "scenarios": [p.stem for p in SUITE],
        "runs": len(runs),
        "exit_code": done.returncode,
        "wall_s": wall,
        "planned_s": planned,
        "overhead_s": round(wall - planned, 3),
        "overhead_per_run_s": round((wall - planned) / max(1, len(runs)), 3),
        "stages_summed": per_stage,
    }


def _spread(values: list[float]) -> str:
    return f"{min(values):.1f}" if len(values) == 1 else f"{min(values):.1f}–{max(values):.1f}"


def render(results: list[dict[str, Any]]) -> str:
    rows = [f"per-run overhead — {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f} at the end"]
    for job in ("main", "suite"):
        mine = [r for r in results if r["job"] == job]
        if not mine:
            continue
        walls = [r["wall_s"] for r in mine]
        over = [r["overhead_s"] for r in mine]
        head = (
            "README main job"
            if job == "main"
            else f"suite of {mine[0]['runs']} ({', '.join(mine[0]['scenarios'])})"
        )
        rows.append(
            f"{head}: wall {_spread(walls)} s over {len(mine)} run(s), planned {mine[0]['planned_s']:.1f} s, "
            f"overhead {_spread(over)} s"
            + (
                f" (goal <= {GOAL_MAIN_S:g} s)"
                if job == "main"
                else f", {_spread([r['overhead_per_run_s'] for r in mine])} s per run"
            )
        )
        key = "stages" if job == "main" else "stages_summed"
        for name in mine[0][key]:
            values = [r[key][name] for r in mine if r[key].get(name) is not None]
            if values:
                rows.append(f"    {name:22} {_spread(values):>10} s")
        codes = sorted({r["exit_code"] for r in mine})
        rows.append(f"    exit codes: {codes}")
    return "\n".join(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    what = parser.add_mutually_exclusive_group()
    what.add_argument("--suite", action="store_true", help="the 4-scenario suite only")
    what.add_argument("--both", action="store_true", help="the main job and the suite")
    parser.add_argument("--repeat", type=int, default=1, help="runs of each (1-5)")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--keep", type=Path, help="keep the run directories under this directory")
    parser.add_argument("--journal", type=Path, help="only break down this finished run directory")
    args = parser.parse_args()
    if args.journal is not None:
        print(json.dumps(stages(args.journal, float("nan"), None).measured, indent=2))
        return
    if not 1 <= args.repeat <= 5:
        parser.error("--repeat must be within [1, 5]")
    results = []
    for number in range(args.repeat):
        with tempfile.TemporaryDirectory(prefix="bascule-bench-overhead-") as tmp:
            out = (args.keep / str(number)) if args.keep else Path(tmp)
            out.mkdir(parents=True, exist_ok=True)
            if not args.suite:
                results.append(run_main_job(out))
            if args.suite or args.both:
                results.append(run_suite(out))
    print(json.dumps(results, indent=2) if args.json else render(results))


if __name__ == "__main__":
    main()
