"""Benchmark of what `bascule run` imports before its first journal record: the CPU time of each set
of modules, imported in a fresh interpreter, against a bare interpreter's (the floor), the sets
interleaved over several rounds.

CPU time (user + system, `resource.getrusage`) rather than wall time: on a shared machine the wall
time of an import measures the neighbours too. The sets:

- ``bascule.cli``: what `python -m bascule run` imports before it reads its scenario;
- ``run path``: what a run needs before ``run-started`` — typer and rich, loading, planning, the
  runner, the target registry and the local target's package;
- ``run path + ci.results``: the same with the scoring and reports a run needs at its end
  (`bascule.ci.results` → reports, metrics, verdicts, numpy);
- ``bascule.model.scenario``: the scenario's pydantic models alone.

    python bench/imports.py              # 3 rounds
    python bench/imports.py --rounds 5 --json
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RUN_PATH = (
    "import typer, rich.console; import bascule.model.loading, bascule.plan, bascule.runner.run, "
    "bascule.targets.registry, bascule.targets.local"
)
SETS = {
    "bare interpreter (the floor)": "pass",
    "bascule.cli": "import bascule.cli",
    "run path": RUN_PATH,
    "run path + ci.results": RUN_PATH + ", bascule.ci.results",
    "bascule.model.scenario": "import bascule.model.scenario",
}
CHILD = (
    "import resource\n{code}\n"
    "r = resource.getrusage(resource.RUSAGE_SELF)\n"
    "import sys; print(r.ru_utime + r.ru_stime, len(sys.modules))"
)


def measure(code: str) -> tuple[float, int]:
    """CPU seconds of a fresh interpreter that runs `code`, and the modules it then holds."""
    path = os.environ.get("PYTHONPATH")
    env = {**os.environ, "PYTHONPATH": str(ROOT) + (os.pathsep + path if path else "")}
    done = subprocess.run(
        [sys.executable, "-c", CHILD.format(code=code)],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
        env=env,
    )
    cpu, modules = done.stdout.split()
    return float(cpu), int(modules)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--rounds", type=int, default=3, help="rounds (1-10)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    if not 1 <= args.rounds <= 10:
        parser.error("--rounds must be within [1, 10]")
    cpu: dict[str, list[float]] = {name: [] for name in SETS}
    modules: dict[str, int] = {}
    for _ in range(args.rounds):
        for name, code in SETS.items():
            seconds, count = measure(code)
            cpu[name].append(seconds)
            modules[name] = count
    floor = statistics.median(cpu["bare interpreter (the floor)"])
    rows = {
        name: {
            "cpu_s_min": round(min(v), 3),
            "cpu_s_max": round(max(v), 3),
            "cpu_s_median": round(statistics.median(v), 3),
            "x_floor": round(statistics.median(v) / floor, 1),
            "modules": modules[name],
        }
        for name, v in cpu.items()
    }
    if args.json:
        print(json.dumps(rows, indent=2))
        return
    load = os.getloadavg()[0]
    print(f"imports, CPU s over {args.rounds} round(s) — {os.cpu_count()} CPUs, load average {load:.2f}")
    for name, row in rows.items():
        print(
            f"    {name:30} {row['cpu_s_min']:.2f}–{row['cpu_s_max']:.2f} s "
            f"(median {row['cpu_s_median']:.2f}, {row['x_floor']:g} × the floor), {row['modules']} modules"
        )


if __name__ == "__main__":
    main()
