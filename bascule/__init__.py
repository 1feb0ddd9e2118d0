"""bascule — resilience chaos testing: replay real cloud outages against a service, score its failover.

The front door for Python (docs/python.md):

    from bascule import run, BasculeError

    result = run("scenarios/faults/crash.yaml", design="designs/active-passive-sovereign.yaml")
    assert result.passed, result.failure_text()
    print(result.figures.time_to_failover, result.dimension("sovereignty").measured)

What is named here is loaded on first use, so that ``import bascule`` stays cheap for the processes
that import a part of it only (the load generator's, the reference stack's services).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from bascule._version import __version__
from bascule.errors import (
    BasculeError,
    FaultError,
    PlanError,
    ProbeError,
    Problem,
    RevertError,
    ScenarioError,
    TargetError,
)

if TYPE_CHECKING:
    from bascule.ci.results import Dimension, RunResult, read_result, run
    from bascule.model.design import Design
    from bascule.model.loading import read_design, read_scenario
    from bascule.model.scenario import Scenario

__all__ = [
    "BasculeError",
    "Design",
    "Dimension",
    "FaultError",
    "PlanError",
    "ProbeError",
    "Problem",
    "RevertError",
    "RunResult",
    "Scenario",
    "ScenarioError",
    "TargetError",
    "__version__",
    "read_design",
    "read_result",
    "read_scenario",
    "run",
]

_LAZY = {
    "Dimension": "bascule.ci.results",
    "RunResult": "bascule.ci.results",
    "read_result": "bascule.ci.results",
    "run": "bascule.ci.results",
    "Design": "bascule.model.design",
    "read_design": "bascule.model.loading",
    "read_scenario": "bascule.model.loading",
    "Scenario": "bascule.model.scenario",
}


def __getattr__(name: str) -> object:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'bascule' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
