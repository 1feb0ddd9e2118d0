"""Planning: from a design and a scenario to a timeline of concrete apply/revert actions, the blast
radius of each phase and the findings a run would confirm. Pure: data in, data out."""

from bascule.model.topology import Endpoint, Link, LinkPurpose, links
from bascule.plan.model import (
    Action,
    ActionOp,
    Finding,
    FindingKind,
    Plan,
    PlannedPhase,
    ReplicaRef,
    Severity,
    TimeMap,
    Touch,
)
from bascule.plan.planner import plan
from bascule.plan.render import plan_to_dict

__all__ = [
    "Action",
    "ActionOp",
    "Endpoint",
    "Finding",
    "FindingKind",
    "Link",
    "LinkPurpose",
    "Plan",
    "PlannedPhase",
    "ReplicaRef",
    "Severity",
    "TimeMap",
    "Touch",
    "links",
    "plan",
    "plan_to_dict",
]
