"""The fault vocabulary: one small, typed class per kind of failure, behind a registry keyed by the
YAML ``kind:``. See DESIGN.md's fault table; ``bascule faults`` lists them with what a client sees."""

from bascule.faults import kinds
from bascule.faults.base import FAULT_KINDS, Fault, fault_kind, register
from bascule.faults.kinds import *  # noqa: F403  (one class per kind, listed once: kinds.__all__)

__all__ = ["FAULT_KINDS", "Fault", "fault_kind", "register"]
__all__ += kinds.__all__
