"""A run SIGKILLed while its faults are in force on a Kubernetes world: a child process applies
them through `KubernetesTarget`, as `bascule run` does, and is killed once all are applied — or in
the middle, after its `kill_after`-th change. `bascule recover` then has the run's ledger."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

TESTS = Path(__file__).resolve().parent

_CHILD = """
import os, signal, sys
sys.path.insert(0, {tests!r})
from kube_world import mapping, touch_of
from bascule.faults import {imports}
from bascule.model.selector import Selector
from bascule.plan.model import Action, ActionOp
from bascule.targets.kubernetes import target as target_module
from bascule.targets.kubernetes.cluster import connect
from bascule.targets.kubernetes.target import KubernetesTarget

kill_after = {kill_after!r}
made = [0]
original = target_module.carry_out

def carry_out(change, apis, *holds):
    if kill_after is not None and made[0] == kill_after:
        print("killed mid-apply", flush=True)
        os.kill(os.getpid(), signal.SIGKILL)
    made[0] += 1
    return original(change, apis, *holds)

target_module.carry_out = carry_out
m = mapping()
apis = connect(m.target, {kubeconfig!r})
target = KubernetesTarget.start(m, apis, __import__("pathlib").Path({run_dir!r}))
faults = [{faults}]
for i, (fault, selector) in enumerate(faults):
    target.apply(Action(float(i), ActionOp.APPLY, i, fault), touch_of(fault, selector))
print("all applied", flush=True)
os.kill(os.getpid(), signal.SIGKILL)
"""


def run_killed(
    kubeconfig: Path,
    run_dir: Path,
    faults: str,
    *,
    imports: str,
    kill_after: int | None,
    timeout: float,
) -> str:
    """Run the child on `kubeconfig`'s clusters: `faults`, the source of its `(fault, selector)`
    pairs, the fault kinds it names in `imports` (from `bascule.faults`); its output, once it was
    killed ("all applied", or "killed mid-apply")."""
    code = _CHILD.format(
        tests=str(TESTS),
        imports=imports,
        kill_after=kill_after,
        kubeconfig=str(kubeconfig),
        run_dir=str(run_dir),
        faults=faults,
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=timeout, check=False
    )
    assert done.returncode == -signal.SIGKILL, done.stderr
    return done.stdout
