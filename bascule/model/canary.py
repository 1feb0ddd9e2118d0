"""The design's answer canary (``routing.canary``): each gateway asks every region's llm a golden
question now and then, checks the answer's facts, and routes away from a region whose llm answers
wrong — failover on wrong answers, not only on errors (docs/stack.md, "Answer canary")."""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field

from bascule.model.durations import Interval, Timeout

__all__ = ["AnswerCanary"]


class AnswerCanary(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    interval: Interval = 0.5
    """How often each gateway asks each region's llm a canary question (real seconds)."""
    timeout: Timeout = 2.0
    """A canary unanswered in this time counts as no verdict (errors are the breakers' business)."""
    unhealthy_after: Annotated[int, Field(ge=1, le=1000)] = 1
    """Wrong answers in a row after which the region is distrusted and traffic routed away."""
    healthy_after: Annotated[int, Field(ge=1, le=1000)] = 20
    """Right answers in a row after which a distrusted region is trusted again."""
