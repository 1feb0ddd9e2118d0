"""`bascule run` on the local target refuses a phase the stack cannot carry out before it starts
anything (docs/local-target.md): no process, no ledger, no ``target-started`` record — exit 2 with
the reason, each refused phase journaled."""

from __future__ import annotations

import os
from pathlib import Path

from rich.console import Console

from bascule.exit_codes import ExitCode
from bascule.journal import read_journal
from bascule.runner.run import RunOptions, run_scenario
from bascule.targets.registry import choose

PAR = "scaleway/fr-par"
# The api is given kv by address ({kv.url}): a dns fault on kv would change nothing it sees, so the
# local target refuses it (only the target knows which callers were given names). If the stack
# were started, kv's command would create STARTED next to the design.
DESIGN = f"""
id: refused-dns
regions: [{{id: {PAR}}}]
components:
  api:
    entry: true
    calls: [kv]
    command:
      argv: ["{{python}}", -m, http.server, "{{port}}", --bind, 127.0.0.1]
      env: {{KV_URL: "{{kv.url}}"}}
    replicas: {{{PAR}: 1}}
  kv:
    command:
      argv: ["{{python}}", -c, "open('STARTED', 'w').close()"]
    replicas: {{{PAR}: 1}}
"""
SCENARIO = """
id: refused-dns-run
title: a dns fault no caller can see
design: design.yaml
steady_state: {probes: [{kind: http, url: /}]}
phases:
  - {name: kv unnamed, at: 1s, for: 1s, fault: {kind: dns, answer: nodata}, target: {component: kv}}
"""


def test_a_phase_the_local_stack_cannot_carry_out_is_refused_before_the_stack_starts(tmp_path: Path) -> None:
    (tmp_path / "design.yaml").write_text(DESIGN)
    (tmp_path / "scenario.yaml").write_text(SCENARIO)
    out = tmp_path / "run"
    with open(os.devnull, "w") as sink:
        outcome = run_scenario(
            RunOptions(tmp_path / "scenario.yaml", choose("local"), out=out, quiet=True),
            console=Console(file=sink),
        )
    assert outcome.exit_code == ExitCode.INVALID_INPUT, outcome.reason
    assert outcome.reason.startswith("the local target refuses: phase 0 (kv unnamed, dns): dns: no caller")
    records = list(read_journal(out / "journal.jsonl"))
    (refused,) = [r["message"] for r in records if r["type"] == "refused"]
    assert refused.startswith("phase 0 (kv unnamed, dns): dns: no caller of kv@scaleway/fr-par")
    assert [r for r in records if r["type"] == "target-started"] == []
    assert records[-1]["type"] == "run-ended" and records[-1]["exit_code"] == ExitCode.INVALID_INPUT
    # Nothing was started: no process ran kv's command, no undo ledger, no logs.
    assert not (tmp_path / "STARTED").exists()
    assert not (out / "ledger.jsonl").exists() and not (out / "logs").exists()
