"""The faults on answers as plain data: their parameters, what the planner and the local target make
of them, the Kubernetes refusals, `bascule faults`, and the response framing the fault plane reads
(pure; the behaviour clients see is in test_answer_faults.py)."""

from __future__ import annotations

import pytest
from kube_world import TARGET, mapping, touch_of
from local_helpers import ROOT, phase
from pydantic import ValidationError
from typer.testing import CliRunner

from bascule.cli import app
from bascule.faults import CutHow, Degrade, DegradeHow, Fault, Flap, StreamCut, TokenRate, Ttft
from bascule.model.loading import read_design
from bascule.model.selector import Selector
from bascule.stack.layout import layout
from bascule.targets.kubernetes.calls import ClusterFacts, RefusalRule, compute_calls
from bascule.targets.kubernetes.resources import CHAOS_KINDS
from bascule.targets.local import faultstate as fs
from bascule.targets.local.effects import RouteFault, compute_effects, dump_effect, parse_effect
from bascule.targets.local.proxy.answers import degrade_text
from bascule.targets.local.proxy.responses import Body, End, Framing, Head, Raw, ResponseParser
from bascule.targets.local.proxy.tokens import TokenBudget

APS = ROOT / "designs" / "active-passive-sovereign.yaml"
LLM = Selector(component="llm", region="aws/us-east-1")
CASES: list[tuple[Fault, fs.ProxyFault]] = [
    (Ttft(delay=2.0), fs.Ttft(delay=2.0)),
    (StreamCut(after_events=3), fs.StreamCut(after_events=3)),
    (StreamCut(after_bytes=100, how=CutHow.RESET), fs.StreamCut(after_bytes=100, how=fs.CutHow.RESET)),
    (TokenRate(tokens_per_minute=6000), fs.TokenRate(tokens_per_minute=6000)),
    (Degrade(ratio=0.5, how=DegradeHow.SWAP), fs.Degrade(ratio=0.5, how=fs.DegradeHow.SWAP)),
    (
        Degrade(ratio=0.16, how=DegradeHow.TOKENS, tokens=0.2, sticky=True),
        fs.Degrade(ratio=0.16, how=fs.DegradeHow.TOKENS, tokens=0.2, sticky=True),
    ),
]


def test_parameters_are_checked() -> None:
    with pytest.raises(ValidationError, match="exactly one of after_events and after_bytes"):
        StreamCut()
    with pytest.raises(ValidationError, match="exactly one"):
        StreamCut(after_events=1, after_bytes=1)
    with pytest.raises(ValidationError, match="delay must be above 0"):
        Ttft(delay=0.0)
    with pytest.raises(ValidationError):
        TokenRate(tokens_per_minute=0)
    with pytest.raises(ValidationError):
        Degrade(ratio=1.5)
    assert Ttft.model_validate({"kind": "ttft", "delay": "1500ms"}).delay == 1.5
    assert Degrade().describe() == ""
    assert StreamCut(after_events=2, how=CutHow.EOF).describe() == "after_events=2, how=eof"


@pytest.mark.parametrize(("fault", "state"), CASES, ids=lambda c: getattr(c, "kind", ""))
def test_the_local_target_puts_each_hop_to_the_target_in_the_state(
    fault: Fault, state: fs.ProxyFault
) -> None:
    design = read_design(APS)
    _, touch = phase(design, fault, LLM)
    effects = compute_effects(fault, touch, layout(design))
    assert effects and all(isinstance(e, RouteFault) and e.state == state for e in effects)
    assert {e.route for e in effects if isinstance(e, RouteFault)} == {
        "gateway@aws-us-east-1->llm@aws-us-east-1",
        "gateway@scaleway-fr-par->llm@aws-us-east-1",
    }
    assert [parse_effect(dump_effect(e)) for e in effects] == list(effects), "ledger round trip"
    # and as the inner fault of a flap
    Flap(fault=fault, period=2.0)


@pytest.mark.parametrize(("fault", "state"), CASES, ids=lambda c: getattr(c, "kind", ""))
def test_kubernetes_refuses_each_with_why(fault: Fault, state: fs.ProxyFault) -> None:
    facts = {c: ClusterFacts(chaos=frozenset(r.plural for r in CHAOS_KINDS)) for c in ("aws", "scw")}
    found = compute_calls(fault, touch_of(fault, LLM), mapping(TARGET), facts, run_id="r", key="p0")
    assert found.refusal is not None and found.refusal.rule is RefusalRule.UNSUPPORTED
    assert "HTTPChaos" in found.refusal.message and found.calls == ()


def test_bascule_faults_lists_them() -> None:
    result = CliRunner().invoke(app, ["faults"], env={"COLUMNS": "300"})
    assert result.exit_code == 0
    for kind in ("ttft", "stream-cut", "token-rate", "degrade"):
        assert f"│ {kind} " in result.output, kind
    assert "first token late" in result.output and "tokens_per_minute=(required)" in result.output


# -- pure parts of the fault plane ----------------------------------------------------------------


def test_a_token_budget_refills_continuously() -> None:
    now = [0.0]
    budget = TokenBudget(600, clock=lambda: now[0])  # 10 a second
    assert budget.wait() == 0.0 and dict(budget.headers())["x-ratelimit-remaining-tokens"] == "600"
    budget.spend(650)
    assert budget.wait() == pytest.approx(5.1)
    assert dict(budget.headers())["x-ratelimit-reset-tokens"] == "65.000s"
    now[0] = 5.1
    assert budget.wait() == 0.0
    now[0] = 1000.0
    assert budget.level() == 600.0, "never above the budget"


def test_a_token_budget_tells_when_a_charge_spends_it_and_gives_its_header_lines() -> None:
    now = [0.0]
    spent: list[float] = []
    budget = TokenBudget(600, clock=lambda: now[0], on_spent=lambda: spent.append(now[0]))
    full = (
        b"x-ratelimit-limit-tokens: 600\r\nx-ratelimit-remaining-tokens: 600\r\n"
        b"x-ratelimit-reset-tokens: 0.000s\r\n"
    )
    assert budget.header_lines() == full
    budget.spend(599)  # one token left: not spent
    assert spent == [] and budget.header_lines().split(b"\r\n")[1:3] == [
        b"x-ratelimit-remaining-tokens: 1",
        b"x-ratelimit-reset-tokens: 59.900s",
    ]
    now[0] = 0.05  # half a token back
    budget.spend(1)
    assert spent == [0.05] and budget.wait() == pytest.approx(0.05)
    now[0] = 100.0
    assert budget.header_lines() == full


def test_wrong_answers() -> None:
    text = "The anchors are screwed 18 m into the lake bed. [doc:anchors-01]"
    corrupt = degrade_text(text, fs.DegradeHow.CORRUPT, None)
    assert corrupt == "Gur napubef ner fperjrq 63 z vagb gur ynxr orq. [qbp:napubef-56]"
    assert degrade_text(corrupt, fs.DegradeHow.CORRUPT, None) == text
    assert degrade_text(text, fs.DegradeHow.TRUNCATE, None) == "The anchors are screwed 18"
    assert degrade_text(text, fs.DegradeHow.SWAP, "other") == "other"
    assert degrade_text(text, fs.DegradeHow.SWAP, None) == "The anchors are screwed 18"


def _pieces(parser: ResponseParser, *chunks: bytes) -> list[object]:
    out: list[object] = []
    for chunk in chunks:
        out += parser.feed(chunk)
    return out


def test_a_whole_response_in_one_read_is_cut_as_byte_by_byte() -> None:
    # The parser's fast path (one read, one response framed by its length) against its step machine.
    responses = [
        b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: 2\r\n\r\nok",
        b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\ncontent-length: 4\r\n\r\nokok",  # the last one counts
        b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n",
        b"HTTP/1.1 404 Not Found\r\ncontent-length: 5\r\n\r\nnope!",
        b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
        b"HTTP/1.1 200 OK\r\ncontent-length: 9\r\n\r\npart",  # the rest comes later
        b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nokHTTP/1.1 204 No Content\r\n\r\n",  # two in one read
        b"HTTP/1.1 200 OK\r\nbroken\r\n\r\n",
        b"HTTP/1.1 2xx OK\r\n\r\n",  # not a response: raw from then on
    ]
    for data in responses:
        whole, stepped = ResponseParser(), ResponseParser()
        for parser in (whole, stepped):
            parser.expect(False)
            parser.expect(False)
        fast = whole.feed(data)
        slow = _pieces(stepped, *(data[i : i + 1] for i in range(len(data))))
        assert [p.head for p in fast if isinstance(p, Head)] == [p.head for p in slow if isinstance(p, Head)]
        assert b"".join(p.payload for p in fast if isinstance(p, Body)) == b"".join(
            p.payload for p in slow if isinstance(p, Body)
        )
        assert [type(p) for p in fast if not isinstance(p, Body)] == [
            type(p) for p in slow if not isinstance(p, Body)
        ]
        assert b"".join(p.data for p in fast if isinstance(p, Raw)) == b"".join(
            p.data for p in slow if isinstance(p, Raw)
        )
        assert whole.between == stepped.between
        assert whole.feed(b"HTTP/1.1 200 OK\r\ncontent-length: 1\r\n\r\nx") == stepped.feed(
            b"HTTP/1.1 200 OK\r\ncontent-length: 1\r\n\r\nx"
        ), data


def test_responses_are_cut_from_any_chunking() -> None:
    stream = (
        b"HTTP/1.1 100 Continue\r\n\r\n"
        b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nhello"
        b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\ncontent-type: text/event-stream\r\n\r\n"
        b"7\r\ndata: 1\r\n2\r\n\n\n\r\n0\r\nx-trailer: t\r\n\r\n"
        b"HTTP/1.1 204 No Content\r\n\r\n"
        b"HTTP/1.1 200 OK\r\ncontent-length: 3\r\n\r\n"
    )
    for size in (1, 7, len(stream)):
        parser = ResponseParser()
        for _ in range(3):
            parser.expect(False)
        parser.expect(True)  # the last request was HEAD: its response has no body
        pieces = _pieces(parser, *(stream[i : i + size] for i in range(0, len(stream), size)))
        heads = [p.head for p in pieces if isinstance(p, Head)]
        assert [h.status for h in heads] == [100, 200, 200, 204, 200]
        assert [h.framing for h in heads] == [
            Framing.NONE,
            Framing.LENGTH,
            Framing.CHUNKED,
            Framing.NONE,
            Framing.NONE,
        ]
        assert heads[2].content_type == b"text/event-stream"
        body = b"".join(p.payload for p in pieces if isinstance(p, Body))
        assert body == b"hellodata: 1\n\n"
        assert sum(isinstance(p, End) for p in pieces) == 5
        assert parser.between


def test_a_body_until_close_and_bytes_that_are_not_http() -> None:
    parser = ResponseParser()
    pieces = parser.feed(b"HTTP/1.0 200 OK\r\n\r\nsome") + parser.feed(b" more") + parser.eof()
    assert [type(p) for p in pieces] == [Head, Body, Body, End]
    assert pieces[0].head.framing is Framing.CLOSE  # type: ignore[union-attr]
    other = ResponseParser()
    assert other.feed(b"SSH-2.0-OpenSSH\r\n") == [Raw(b"SSH-2.0-OpenSSH\r\n")]
    assert other.feed(b"HTTP/1.1 200 OK\r\n\r\n") == [Raw(b"HTTP/1.1 200 OK\r\n\r\n")], "raw from then on"


def test_a_head_is_rendered_with_headers_dropped_and_added() -> None:
    parser = ResponseParser()
    (head, _end) = parser.feed(
        b"HTTP/1.1 200 OK\r\nX-RateLimit-Remaining-Tokens: 9\r\ncontent-length: 0\r\n\r\n"
    )
    assert isinstance(head, Head)
    rendered = head.head.render(
        drop=frozenset({b"x-ratelimit-remaining-tokens"}), add=(("x-ratelimit-remaining-tokens", "5"),)
    )
    assert rendered == (b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nx-ratelimit-remaining-tokens: 5\r\n\r\n")
