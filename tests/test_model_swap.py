"""`model-swap`: a hop's chat answers relabelled as a smaller model's and changed as one's would
fail, as httpx and the official `mistralai` client see them through a fault-plane route in front of
the reference llm; the kind as data, and Kubernetes' refusal."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from kube_world import TARGET, mapping, touch_of
from local_helpers import ROOT, phase
from mistralai.client import Mistral

from bascule.faults import ModelSwap, SwapAnswers
from bascule.model.loading import read_design
from bascule.model.selector import Selector
from bascule.stack import prompt
from bascule.stack.layout import layout
from bascule.stack.llm import LlmConfig
from bascule.targets.kubernetes.calls import ClusterFacts, RefusalRule, compute_calls
from bascule.targets.kubernetes.resources import CHAOS_KINDS
from bascule.targets.local import faultstate as fs
from bascule.targets.local.effects import RouteFault, compute_effects
from bascule.targets.local.proxy import FaultPlane
from bascule.targets.local.proxy.modelswap import Shortener, uncite
from tests.run_cli import run_bascule
from tests.test_llm import MODEL, PASSAGES, QUESTION, chat_body, serve

SMALL = "ministral-3b-latest"
LLM = Selector(component="llm", region="aws/us-east-1")
FACTS = {c: ClusterFacts(chaos=frozenset(r.plural for r in CHAOS_KINDS)) for c in ("aws", "scw")}
EXPECTED = prompt.extract_answer(QUESTION, PASSAGES).text


@pytest.fixture(scope="module")
def llm() -> Iterator[str]:
    with serve(LlmConfig(model=MODEL, provider="scaleway", tokens_per_second=200.0)) as url:
        yield url


def test_the_text_stand_ins() -> None:
    two = "The anchors are screwed 18 m deep. [doc:anchors-01] They are steel 2.5 m long. [doc:anchors-02]"
    assert Shortener().feed(two) == "The anchors are screwed 18 m deep. [doc:anchors-01]"
    assert Shortener().feed("One [doc:a]. Two [doc:b].") == "One [doc:a]."
    assert Shortener().feed("No sentence end here [doc:a]") == "No sentence end here [doc:a]"
    # Fed in pieces (a stream's deltas): the same text is kept.
    shortener = Shortener()
    pieces = [word + " " for word in two.split(" ")]
    assert "".join(shortener.feed(p) for p in pieces).strip() == Shortener().feed(two)
    assert uncite(two) == "The anchors are screwed 18 m deep. They are steel 2.5 m long."


def test_the_kind_as_data() -> None:
    design = read_design(ROOT / "designs" / "active-passive-sovereign.yaml")
    fault = ModelSwap(to=SMALL, answers=SwapAnswers.UNCITED, ratio=0.5)
    state = fs.ModelSwap(to=SMALL, answers=fs.SwapAnswers.UNCITED, ratio=0.5)
    _, touch = phase(design, fault, LLM)
    effects = compute_effects(fault, touch, layout(design))
    assert effects and all(isinstance(e, RouteFault) and e.state == state for e in effects)
    assert fs.parse_proxy_fault(fs.dump_proxy_fault(state)) == state
    plan = compute_calls(fault, touch_of(fault, LLM), mapping(TARGET), FACTS, run_id="r", key="p0")
    assert plan.refusal is not None and plan.refusal.rule is RefusalRule.UNSUPPORTED
    assert "HTTPChaos" in plan.refusal.message
    with pytest.raises(ValueError, match="to"):
        ModelSwap.model_validate({"kind": "model-swap", "to": ""})


def test_httpx_reads_a_smaller_models_answer(plane: FaultPlane, route: str) -> None:
    with httpx.Client(timeout=10.0) as client:
        plain = client.post(f"{route}/v1/chat/completions", json=chat_body())
        plane.set_fault("r", fs.ModelSwap(to=SMALL))
        swapped = client.post(f"{route}/v1/chat/completions", json=chat_body())
    assert plain.json()["model"] == MODEL and plain.json()["choices"][0]["message"]["content"] == EXPECTED
    assert swapped.status_code == 200 and swapped.json()["model"] == SMALL
    assert swapped.headers["x-bascule-model"] == SMALL
    assert int(swapped.headers["content-length"]) == len(swapped.content)
    text = swapped.json()["choices"][0]["message"]["content"]
    assert text == Shortener().feed(EXPECTED) and len(text) < len(EXPECTED)
    assert plane.stats("r").requests_faulted == 1


def test_the_mistral_client_streaming_and_not(plane: FaultPlane, route: str) -> None:
    messages: Any = prompt.build_messages(QUESTION, PASSAGES)
    plane.set_fault("r", fs.ModelSwap(to=SMALL, answers=fs.SwapAnswers.UNCITED))
    with Mistral(api_key="k", server_url=route) as client:
        whole = client.chat.complete(model=MODEL, messages=messages)
        models, deltas = set(), []
        with client.chat.stream(model=MODEL, messages=messages) as stream:
            for event in stream:
                models.add(event.data.model)
                if event.data.choices:
                    deltas.append(str(event.data.choices[0].delta.content or ""))
    assert whole.model == SMALL and whole.choices[0].message.content == uncite(EXPECTED)
    assert models == {SMALL}
    # A stream loses its markers delta by delta: the spaces around them stay.
    assert " ".join("".join(deltas).split()) == uncite(EXPECTED) and "[doc:" not in "".join(deltas)
    plane.set_fault("r", fs.ModelSwap(to=SMALL, answers=fs.SwapAnswers.SHORTER))
    with (
        Mistral(api_key="k", server_url=route) as client,
        client.chat.stream(model=MODEL, messages=messages) as stream,
    ):
        text = "".join(
            str(event.data.choices[0].delta.content or "") for event in stream if event.data.choices
        )
    assert text.strip() == Shortener().feed(EXPECTED)


def test_a_ratio_spares_some_answers_but_relabels_all(plane: FaultPlane, route: str) -> None:
    with httpx.Client(timeout=10.0) as client:
        refused = client.post(f"{route}/v1/chat/completions", json=chat_body(model="nope"))
        plane.set_fault("r", fs.ModelSwap(to=SMALL, ratio=0.0))
        spared = client.post(f"{route}/v1/chat/completions", json=chat_body()).json()
        errors = client.post(f"{route}/v1/chat/completions", json=chat_body(model="nope"))
    assert spared["model"] == SMALL and spared["choices"][0]["message"]["content"] == EXPECTED
    # Error answers pass untouched.
    assert errors.status_code == refused.status_code >= 400 and errors.content == refused.content
    assert plane.stats("r").requests_faulted == 0


@pytest.mark.slow
def test_a_model_swap_run_keeps_availability_and_loses_correctness(tmp_path: Path) -> None:
    """scenarios/faults/model-swap.yaml end to end on the local target: the primary's llm answers
    as a smaller model for 10 s. Every request still succeeds; bascule's grading of the answers
    against the golden set measures the correctness lost."""
    out = tmp_path / "run"
    proc = run_bascule(ROOT / "scenarios" / "faults" / "model-swap.yaml", out)
    assert proc.returncode == 1, proc.stdout + proc.stderr  # completed, correctness not met
    result = json.loads((out / "result.json").read_text())
    figures = result["figures"]
    assert figures["success_ratio"] >= 0.99, "availability holds"
    correctness = figures["correctness"]
    assert correctness["baseline"] >= 0.9
    assert correctness["impact"] <= correctness["baseline"] - 0.1, correctness
    dims = {d["name"]: d for d in result["score"]["dimensions"]}
    assert dims["availability"]["passed"] and not dims["correctness"]["passed"]


def test_a_model_on_a_service_of_ones_own_is_refused_saying_what_takes_one() -> None:
    """A new user's own `llm` (a command:) was told "only llm components take a model"."""
    from bascule.errors import ScenarioError
    from bascule.model.loading import parse_design

    text = """
id: own
regions: [{id: scaleway/fr-par}]
components:
  llm:
    entry: true
    command: {argv: ["{python}", llm.py, --port, "{port}"]}
    replicas: {scaleway/fr-par: {replicas: 1, model: chat-large}}
"""
    with pytest.raises(ScenarioError) as info:
        parse_design(text, "own.yaml")
    (problem,) = [p for p in info.value.problems if "model" in str(p)]
    assert "only the reference llm takes a model" in problem.message
    assert "a model-swap fault needs no model: here" in problem.message
