"""The answer canary (the design's ``routing.canary``): every ``interval``, a gateway asks each
region's llm a golden question over that question's own documents, checks that the answer states
every fact of it, and tells the router to route away from a region whose llm answered wrong
(`Router.distrust`) — until it has answered right ``healthy_after`` times in a row.

A wrong answer with status 200 opens no breaker: without this, a region that serves wrong answers
keeps its traffic. The canary asks through the same client, pool and fault-plane route as the
requests it protects, so it meets what they meet — including a share of answers, or a share of
pooled connections (``degrade`` with ``sticky``), that are wrong. It asks only questions whose data
class the region may serve (the design's sovereignty guard): a canary never sends a document where
its class may not go. Errors and timeouts give no verdict: failing calls are the breakers' business.

`CanaryVerdicts` and `states_facts` are pure; `AnswerCanaryLoop` is the small loop that acts.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

import httpx

from bascule.model.canary import AnswerCanary
from bascule.model.design import Design
from bascule.stack.corpus import GoldenQuestion, load_documents, load_golden_set
from bascule.stack.prompt import Passage, build_messages, message_text
from bascule.stack.routing import Router

__all__ = ["AnswerCanaryLoop", "CanaryVerdicts", "canary_questions", "states_facts"]

_log = logging.getLogger(__name__)

Post = Callable[[str, Mapping[str, Any]], Awaitable[httpx.Response]]


def _normalise(text: str) -> str:
    return " ".join(text.split()).casefold()


def states_facts(question: GoldenQuestion, answer: str) -> bool:
    """Whether `answer` states every fact of `question` — as whole words and numbers, case and runs
    of whitespace aside: the rule bascule grades golden answers by."""
    said = _normalise(answer)
    return all(
        re.search(rf"(?<!\w)(?<!\d[.,]){re.escape(_normalise(fact))}(?!\w)(?![.,]\d)", said) is not None
        for fact in question.facts
    )


def canary_questions(design: Design, region: str) -> tuple[GoldenQuestion, ...]:
    """The golden questions the canary may ask `region`'s llm: those of a data class the design
    defines and lets that region serve."""
    return tuple(
        q
        for q in load_golden_set()
        if q.data_class.value in design.data_classes and region in design.allowed_regions(q.data_class.value)
    )


class CanaryVerdicts:
    """Each region's run of right and wrong canary answers, and whether it is distrusted."""

    def __init__(self, policy: AnswerCanary) -> None:
        self.policy = policy
        self.wrong: dict[str, int] = {}
        self.right: dict[str, int] = {}
        self.distrusted: set[str] = set()
        self.asked = 0
        self.wrong_total = 0

    def record(self, region: str, right: bool) -> bool | None:
        """One canary answer; the region's new trust (True: distrusted) when it changed, else None."""
        self.asked += 1
        if right:
            self.wrong[region] = 0
            self.right[region] = self.right.get(region, 0) + 1
            if region in self.distrusted and self.right[region] >= self.policy.healthy_after:
                self.distrusted.discard(region)
                return False
            return None
        self.wrong_total += 1
        self.right[region] = 0
        self.wrong[region] = self.wrong.get(region, 0) + 1
        if region not in self.distrusted and self.wrong[region] >= self.policy.unhealthy_after:
            self.distrusted.add(region)
            return True
        return None


class AnswerCanaryLoop:
    """Asks each region's llm a canary question every ``interval`` and tells the router."""

    def __init__(
        self,
        policy: AnswerCanary,
        design: Design,
        llms: Mapping[str, str],
        router: Router,
        post: Post,
        model_for: Callable[[str], str],
    ) -> None:
        self.policy = policy
        self.llms = dict(llms)
        self.router = router
        self.post = post
        self.model_for = model_for
        self.verdicts = CanaryVerdicts(policy)
        self.questions = {region: canary_questions(design, region) for region in self.llms}
        self.documents = {d.id: d for d in load_documents()}
        self.turn = 0

    async def run(self) -> None:
        while True:
            await asyncio.gather(*(self.check(region) for region in self.llms))
            self.turn += 1
            await asyncio.sleep(self.policy.interval)

    async def check(self, region: str) -> None:
        right = await self.ask(region)
        if right is None:
            return
        changed = self.verdicts.record(region, right)
        if changed is not None:
            self.router.distrust(region, changed)
            verdict = "wrong: routing away from it" if changed else "right again: trusted"
            _log.warning("answer canary: the llm in %s answered %s", region, verdict)

    async def ask(self, region: str) -> bool | None:
        """Whether `region`'s llm answered this turn's question right; None: no answer."""
        questions: Sequence[GoldenQuestion] = self.questions[region]
        if not questions:
            return None
        question = questions[self.turn % len(questions)]
        passages = [
            Passage(doc.id, doc.title, doc.text)
            for doc_id in question.cites
            if (doc := self.documents.get(doc_id))
        ]
        payload = {"model": self.model_for(region), "messages": build_messages(question.question, passages)}
        try:
            async with asyncio.timeout(self.policy.timeout):
                response = await self.post(f"{self.llms[region]}/v1/chat/completions", payload)
            choices = response.json()["choices"]
            text = message_text(choices[0]["message"]["content"])
        except (Exception, TimeoutError):  # an error is no verdict on the answers: breakers judge errors
            return None
        return states_facts(question, text)
