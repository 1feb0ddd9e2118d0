"""`bascule run SCENARIO --quiet --out OUT` as a user runs it: a process of its own, bounded in time."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

__all__ = ["run_bascule"]


def run_bascule(scenario: Path, out: Path, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    """The finished command, its output captured; its exit code is the caller's to judge."""
    return subprocess.run(
        [
            sys.executable,
            "-c",
            "from bascule.cli import main; main()",
            "run",
            str(scenario),
            "--quiet",
            "--out",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
