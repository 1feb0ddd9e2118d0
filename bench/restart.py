"""Benchmark of the local stack's start and of a crashed replica's restart: forked from the fork
server against every process cold (``BASCULE_FORK_SERVER=0``), the two interleaved.

Each pass is a fresh process that starts the reference design's stack
(``designs/active-passive-sovereign.yaml``), records how long it took to be ready, then kills the
primary retriever ``--kills`` times with ``restart_after`` 1 s and measures, each time, how long
after that delay the new process announced its address (``listening on``) — the floor is the delay
itself: 0 s beyond it.

    python bench/restart.py                  # 2 passes of each, 3 kills a pass
    python bench/restart.py --passes 3 --json
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DESIGN = ROOT / "designs" / "active-passive-sovereign.yaml"
REPLICA = "retriever-aws-us-east-1-0"
DELAY_S = 1.0


def one_pass(kills: int) -> dict[str, object]:
    """In this process: start the stack, kill and time the restarts, stop."""
    sys.path.insert(0, str(ROOT))
    from bascule.model.loading import read_design
    from bascule.targets.local.stack import LocalStack

    design = read_design(DESIGN)
    with tempfile.TemporaryDirectory(prefix="bascule-bench-restart-") as tmp:
        stack = LocalStack.start(design, DESIGN, Path(tmp) / "run", timeout=120)
        try:
            announced = threading.Event()
            stack.supervisor.subscribe(
                lambda e: announced.set() if e.kind == "started" and e.name == REPLICA else None
            )
            beyond: list[float] = []
            for _ in range(kills):
                announced.clear()
                stack.supervisor.kill(REPLICA, restart_after=DELAY_S)
                killed = time.monotonic()
                if not announced.wait(60):
                    raise SystemExit(f"{REPLICA} did not come back within 60 s")
                beyond.append(round(time.monotonic() - killed - DELAY_S, 3))
                time.sleep(1.0)
            ready = stack.timings.ready
        finally:
            stack.stop()
    return {
        "ready_s": round(ready, 3),
        "restart_beyond_delay_s": beyond,
        "load": round(os.getloadavg()[0], 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--passes", type=int, default=2, help="passes of each mode (1-5)")
    parser.add_argument("--kills", type=int, default=3, help="kills a pass (1-10)")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--one-pass", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one_pass:
        print(json.dumps(one_pass(args.kills)))
        return
    if not (1 <= args.passes <= 5 and 1 <= args.kills <= 10):
        parser.error("--passes within [1, 5], --kills within [1, 10]")
    results: dict[str, list[dict[str, object]]] = {"forked": [], "cold": []}
    for _ in range(args.passes):
        for mode, switch in (("forked", "1"), ("cold", "0")):
            done = subprocess.run(
                [sys.executable, __file__, "--one-pass", "--kills", str(args.kills)],
                capture_output=True,
                text=True,
                timeout=600,
                check=True,
                env={**os.environ, "BASCULE_FORK_SERVER": switch},
            )
            results[mode].append(json.loads(done.stdout.strip().splitlines()[-1]))
    if args.json:
        print(json.dumps(results, indent=2))
        return
    print(f"stack start and restart, {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f} at the end")
    medians: dict[str, tuple[float, float]] = {}
    for mode, passes in results.items():
        ready = [float(p["ready_s"]) for p in passes]  # type: ignore[arg-type]
        beyond = [float(x) for p in passes for x in p["restart_beyond_delay_s"]]  # type: ignore[attr-defined]
        medians[mode] = (statistics.median(ready), statistics.median(beyond))
        print(
            f"  {mode:6}  ready {min(ready):.2f}–{max(ready):.2f} s;"
            f"  restart, beyond its {DELAY_S:g} s delay: {min(beyond):.2f}–{max(beyond):.2f} s"
        )
    (fr, fb), (cr, cb) = medians["forked"], medians["cold"]
    ratio = cb / max(fb, 1e-3)
    print(f"  cold ÷ forked, medians: ready {cr / fr:.1f} ×, restart beyond the delay {ratio:.1f} ×")


if __name__ == "__main__":
    main()
