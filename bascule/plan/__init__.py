"""Planning: from a design and a scenario to a timeline of concrete apply/revert actions, the blast
radius of each phase and the findings a run would confirm. Pure: data in, data out."""

from bascule.model.topology import Endpoint, Link, LinkPurpose, links
from bascule.plan import model
from bascule.plan.model import *  # noqa: F403  (the plan's records, listed once: model.__all__)
from bascule.plan.planner import plan
from bascule.plan.render import plan_to_dict

__all__ = ["Endpoint", "Link", "LinkPurpose", "links", "plan", "plan_to_dict"]
__all__ += model.__all__
