"""SIGINT and SIGTERM to `bascule run`, `suite`, `compare` and `stack up` with both cores kept busy:
everything reverted and the ledger closed within 2 s, the command gone within 5 s, nothing of the
run left, and a suite or a comparison starts no further run. One try of each here (about 2 min);
``python bench/shutdown.py`` makes 10 of each and reports the p95 (docs/interruption.md)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.slow
def test_every_long_command_lets_go_promptly_on_sigint_and_sigterm_with_both_cores_busy() -> None:
    done = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "shutdown.py"), "--tries", "1", "--json"],
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout)
    print(f"\n{json.dumps(report['summary'], indent=1)}\n({report['seconds']:.0f} s)")
    tries = report["tries"]
    assert {(t["command"], t["signal"]) for t in tries} == {
        (c, s) for c in ("run", "suite", "compare", "stack-up") for s in ("SIGINT", "SIGTERM")
    }
    for t in tries:
        where = f"{t['command']} {t['signal']}: {t}"
        assert t["exit_code"] == (0 if t["command"] == "stack-up" else 3), where
        assert t["closed_s"] is not None and t["closed_s"] <= 2.0, where
        assert t["exit_s"] <= 5.0, where
        assert t["left"] == 0 and t["further_runs"] == 0, where
        if t["command"] != "stack-up":
            assert t["reverted_s"] is not None and t["reverted_s"] <= 2.0, where
