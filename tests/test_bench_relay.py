"""`bench/relay.py` keeps measuring what docs/performance.md says it does: the relay's own Python
per request and answer on each idle fault, against no fault in the same run."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parent.parent / "bench" / "relay.py"


def test_the_relay_bench_prints_each_fault_against_no_fault() -> None:
    done = subprocess.run(
        [sys.executable, str(BENCH), "--pairs", "1000", "--rounds", "1", "--only", "token-rate,stream-cut"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    rows = {line.split()[0]: line.split() for line in done.stdout.splitlines()[2:]}
    assert set(rows) == {"no", "token-rate", "stream-cut"}, done.stdout
    assert float(rows["no"][3]) == 1.0  # "no fault": its own floor
    assert float(rows["token-rate"][1]) > 0 and float(rows["token-rate"][2]) > 0
    refused = subprocess.run(
        [sys.executable, str(BENCH), "--only", "blackhole"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert refused.returncode == 2 and "unknown idle fault" in refused.stderr
