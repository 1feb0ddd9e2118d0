"""The reference stack on the local target, run with ``--otlp``: its services export their spans to
bascule's receiver, and the paths they tell give the same failover time and the same violation
count as the fault plane's hops (both printed in the summary). Real processes for about a minute:
slow."""

from __future__ import annotations

import os
import socket
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from rich.console import Console

from bascule.ci.results import run_scored
from bascule.exit_codes import ExitCode
from bascule.journal import read_journal
from bascule.runner.run import RunOptions
from bascule.targets.registry import choose

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parent.parent
PROBE_PERIOD = 0.1
"""The rag probe's default rate is 10 per second."""


def records(run_dir: Path, kind: str) -> list[dict[str, Any]]:
    return [r for r in read_journal(run_dir) if r["type"] == kind]


def test_spans_and_the_fault_plane_agree_on_failover_and_violations(tmp_path: Path) -> None:
    out = tmp_path / "run"
    with open(os.devnull, "w") as sink:
        outcome = run_scored(
            RunOptions(
                scenario=ROOT / "scenarios" / "faults" / "region-outage.yaml",
                design=ROOT / "designs" / "us-fallback.yaml",
                target=choose("local"),
                out=out,
                quiet=True,
                otlp=True,
            ),
            console=Console(file=sink),
        )
    # Completed; us-fallback sends confidential data to the US, so sovereignty fails.
    assert outcome.exit_code == ExitCode.OBJECTIVES_FAILED, outcome.reason
    (receiver,) = records(out, "traces-receiver")
    (received,) = records(out, "traces-received")
    assert received["spans"] > 500 and received["refused"] == received["dropped"] == 0
    assert received["unattributed"] == 0
    spans = records(out, "span")
    assert len(spans) == received["spans"]
    assert {s["service_name"] for s in spans} >= {"gateway", "retriever", "store", "llm"}
    # The receiver is stopped: its port no longer accepts.
    port = urlsplit(receiver["endpoint"]).port
    with pytest.raises(OSError), socket.create_connection(("127.0.0.1", port), timeout=1.0):
        pass

    (paths,) = records(out, "paths-report")
    sources = paths["sources"]["sources"]
    fault_plane, otlp = sources["fault-plane"], sources["otlp"]
    print(f"\nfault plane: {fault_plane}\nOTLP: {otlp}\nboth: {paths['sources']}")
    assert otlp["requests"] > 300 and fault_plane["requests"] > 300
    assert otlp["violating"] == fault_plane["violating"] > 0
    assert fault_plane["time_to_failover"] is not None and otlp["time_to_failover"] is not None
    assert abs(otlp["time_to_failover"] - fault_plane["time_to_failover"]) <= 2 * PROBE_PERIOD
    assert paths["sources"]["both"] > 300
    assert paths["sources"]["same_verdict"] == paths["sources"]["both"]
    # Each hop judged once, whichever source told it: the judge's count matches a source's.
    (judged,) = records(out, "sovereignty-report")
    assert judged["requests"] == otlp["violating"]

    summary = (out / "summary.md").read_text(encoding="utf-8")
    assert "Time to fail over, by source" in summary and "Violating requests, by source" in summary
    assert f"OTLP {otlp['violating']} of" in summary
