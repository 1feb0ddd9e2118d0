"""The faults on answers — ttft, stream-cut, token-rate, degrade — as real clients see them.

A fault-plane route stands in front of the reference llm service (a uvicorn server in a thread,
streaming server-sent events with ``stream: true``); httpx and the official ``mistralai`` client
call it through the route, as a gateway would call its llm.
"""

from __future__ import annotations

import itertools
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
from mistralai.client import Mistral
from mistralai.client.utils import BackoffStrategy, RetryConfig

from bascule.stack import prompt
from bascule.stack.llm import LlmConfig
from bascule.targets.local.faultstate import (
    CutHow,
    Degrade,
    DegradeHow,
    ProxyFault,
    StreamCut,
    TokenRate,
    Ttft,
    dump_proxy_fault,
    parse_proxy_fault,
)
from bascule.targets.local.proxy import FaultPlane, Upstream
from bascule.targets.local.proxy.answers import degrade_text
from tests.run_cli import run_bascule
from tests.test_llm import MODEL, PASSAGES, QUESTION, chat_body, serve

ROOT = Path(__file__).resolve().parent.parent

EXPECTED = prompt.extract_answer(QUESTION, PASSAGES).text


@pytest.fixture(scope="module")
def llm() -> Iterator[str]:
    # 50 tokens a second: the answer streams in many chunks, as from a real model.
    with serve(LlmConfig(model=MODEL, provider="scaleway", tokens_per_second=50.0)) as url:
        yield url


@pytest.fixture
def route(plane: FaultPlane, llm: str) -> str:
    """The base URL of a fault-plane route in front of the llm."""
    parts = urlsplit(llm)
    assert parts.port is not None
    port = plane.add_route("gateway->llm", Upstream("127.0.0.1", parts.port))
    return f"http://127.0.0.1:{port}"


def _stream(url: str) -> tuple[httpx.Response, float, list[tuple[float, bytes]]]:
    """POST a streamed chat; the response, when its head came, and each body chunk with its time."""
    started = time.monotonic()
    chunks: list[tuple[float, bytes]] = []
    with (
        httpx.Client(timeout=10.0) as client,
        client.stream("POST", f"{url}/v1/chat/completions", json=chat_body(stream=True)) as response,
    ):
        head_at = time.monotonic() - started
        for chunk in response.iter_raw():
            chunks.append((time.monotonic() - started, chunk))
    return response, head_at, chunks


def _events(body: bytes) -> list[str]:
    return [block.removeprefix("data: ") for block in body.decode().split("\n\n") if block]


def _text(events: list[str]) -> str:
    parts = []
    for event in events:
        if event == "[DONE]":
            continue
        parts.append(json.loads(event)["choices"][0]["delta"].get("content") or "")
    return "".join(parts)


def test_the_states_round_trip_through_json() -> None:
    states: list[ProxyFault] = [
        Ttft(delay=1.5),
        StreamCut(after_events=3, how=CutHow.RESET),
        StreamCut(after_bytes=10),
        TokenRate(tokens_per_minute=600),
        Degrade(ratio=0.25, how=DegradeHow.SWAP),
        Degrade(ratio=0.16, how=DegradeHow.TOKENS, tokens=0.3, sticky=True),
    ]
    for state in states:
        assert parse_proxy_fault(json.loads(json.dumps(dump_proxy_fault(state)))) == state
    with pytest.raises(ValueError, match="exactly one"):
        StreamCut()
    with pytest.raises(ValueError, match="how must be one of"):
        parse_proxy_fault({"mode": "degrade", "how": "shuffle"})


# -- ttft -----------------------------------------------------------------------------------------


def test_ttft_sends_the_head_at_once_and_holds_the_first_event(plane: FaultPlane, route: str) -> None:
    # The delay is long beside this machine's scheduling hiccups under load (a few hundred ms):
    # "quick" is under half of it, and the head may reach the client up to a second late.
    delay = 2.5
    response, head_at, chunks = _stream(route)
    assert response.status_code == 200
    assert chunks[0][0] < delay / 2, "without the fault, the first event is quick"

    plane.set_fault("gateway->llm", Ttft(delay=delay))
    response, head_at, chunks = _stream(route)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/event-stream")
    assert chunks[0][0] >= delay, "the first event is held the delay"
    assert chunks[0][0] - head_at >= delay - 1.0, "while the head went out at once"
    body = b"".join(c for _, c in chunks)
    events = _events(body)
    assert events[-1] == "[DONE]" and _text(events) == EXPECTED, "then the whole answer, in order"
    assert plane.stats("gateway->llm").requests_faulted == 1

    plane.clear_fault("gateway->llm")
    _, _, chunks = _stream(route)
    assert chunks[0][0] < delay / 2


def test_ttft_seen_by_the_mistral_client_streaming(plane: FaultPlane, route: str) -> None:
    plane.set_fault("gateway->llm", Ttft(delay=1.0))
    messages: Any = prompt.build_messages(QUESTION, PASSAGES)
    with Mistral(api_key="test-key", server_url=route) as client:
        started = time.monotonic()
        deltas: list[str] = []
        first_at = None
        with client.chat.stream(model=MODEL, messages=messages) as stream:
            for event in stream:
                if first_at is None:
                    first_at = time.monotonic() - started
                content = event.data.choices[0].delta.content
                if isinstance(content, str):
                    deltas.append(content)
        # A non-streamed answer waits the same: its body is held after its head.
        started = time.monotonic()
        completion = client.chat.complete(model=MODEL, messages=messages)
        whole_at = time.monotonic() - started
    assert first_at is not None and first_at >= 1.0
    assert "".join(deltas) == EXPECTED
    assert whole_at >= 1.0
    assert completion.choices[0].message is not None
    assert completion.choices[0].message.content == EXPECTED


# -- stream-cut -----------------------------------------------------------------------------------


def test_stream_cut_ends_the_message_after_n_events(plane: FaultPlane, route: str) -> None:
    plane.set_fault("gateway->llm", StreamCut(after_events=3, how=CutHow.END))
    with httpx.Client(timeout=10.0) as client:
        for _ in range(2):  # the connection lives on: the second request reuses it
            response = client.post(f"{route}/v1/chat/completions", json=chat_body(stream=True))
            assert response.status_code == 200
            events = _events(response.content)
            assert len(events) == 3 and "[DONE]" not in events
            text = _text(events)
            assert text and EXPECTED.startswith(text) and text != EXPECTED, "a truncated answer"
    stats = plane.stats("gateway->llm")
    assert stats.requests_faulted == 2 and stats.connections_accepted == 1


def test_stream_cut_seen_by_the_mistral_client(plane: FaultPlane, route: str) -> None:
    plane.set_fault("gateway->llm", StreamCut(after_events=4, how=CutHow.END))
    messages: Any = prompt.build_messages(QUESTION, PASSAGES)
    with Mistral(api_key="test-key", server_url=route) as client:
        deltas: list[str] = []
        reasons = []
        with client.chat.stream(model=MODEL, messages=messages) as stream:
            for event in stream:
                deltas.append(event.data.choices[0].delta.content or "")
                reasons.append(event.data.choices[0].finish_reason)
    # The client raises nothing: it reads four events and the end of the stream; only the
    # missing finish_reason tells the answer was cut.
    assert len(deltas) == 4 and EXPECTED.startswith("".join(deltas)) and "".join(deltas) != EXPECTED
    assert reasons == [None] * 4


@pytest.mark.parametrize(
    ("how", "error"), [(CutHow.EOF, httpx.RemoteProtocolError), (CutHow.RESET, httpx.HTTPError)]
)
def test_stream_cut_closing_or_resetting_breaks_the_read(
    plane: FaultPlane, route: str, how: CutHow, error: type[Exception]
) -> None:
    plane.set_fault("gateway->llm", StreamCut(after_events=2, how=how))
    got: list[bytes] = []
    with (
        httpx.Client(timeout=10.0) as client,
        client.stream("POST", f"{route}/v1/chat/completions", json=chat_body(stream=True)) as response,
    ):
        assert response.status_code == 200, "the status went out before the cut"
        with pytest.raises(error):
            for chunk in response.iter_raw():
                got.append(chunk)
    assert len(_events(b"".join(got))) == 2


def test_stream_cut_after_bytes_truncates_a_json_answer(plane: FaultPlane, route: str) -> None:
    plane.set_fault("gateway->llm", StreamCut(after_bytes=40, how=CutHow.EOF))
    with httpx.Client(timeout=10.0) as client, pytest.raises(httpx.RemoteProtocolError):
        client.post(f"{route}/v1/chat/completions", json=chat_body())
    # A stream's body is cut too, counted in its payload bytes.
    plane.set_fault("gateway->llm", StreamCut(after_bytes=40, how=CutHow.END))
    response = httpx.post(f"{route}/v1/chat/completions", json=chat_body(stream=True), timeout=10.0)
    assert response.status_code == 200 and len(response.content) == 40


# -- token-rate -----------------------------------------------------------------------------------


def test_token_rate_counts_down_then_answers_429_with_retry_after(plane: FaultPlane, route: str) -> None:
    with httpx.Client(timeout=10.0) as client:
        used = client.post(f"{route}/v1/chat/completions", json=chat_body()).json()["usage"]["total_tokens"]
        # A budget for two answers and a half: the third is served (a token is left), the fourth refused.
        plane.set_fault("gateway->llm", TokenRate(tokens_per_minute=int(used * 2.5)))
        remaining = []
        for _ in range(3):
            response = client.post(f"{route}/v1/chat/completions", json=chat_body())
            assert response.status_code == 200
            assert response.headers["x-ratelimit-limit-tokens"] == str(int(used * 2.5))
            assert response.headers["x-ratelimit-reset-tokens"].endswith("s")
            remaining.append(int(response.headers["x-ratelimit-remaining-tokens"]))
        assert remaining[0] == int(used * 2.5)
        # Each answer charged its usage; the budget refills by 2.5 × used / 60 a second meanwhile.
        for before, after in itertools.pairwise(remaining):
            assert used - 10 <= before - after <= used
        refused = client.post(f"{route}/v1/chat/completions", json=chat_body())
        assert refused.status_code == 429
        assert refused.json()["type"] == "rate_limited"
        assert refused.headers["x-ratelimit-remaining-tokens"] == "0"
        wait = int(refused.headers["retry-after"])
        assert 1 <= wait <= 60
        # A streamed answer is charged its usage from the last event as well.
        time.sleep(wait)
        streamed = client.post(f"{route}/v1/chat/completions", json=chat_body(stream=True))
        assert streamed.status_code == 200 and _events(streamed.content)[-1] == "[DONE]"
        assert client.post(f"{route}/v1/chat/completions", json=chat_body()).status_code == 429


def test_token_rate_seen_by_the_mistral_client_retrying(plane: FaultPlane, route: str) -> None:
    used = httpx.post(f"{route}/v1/chat/completions", json=chat_body(), timeout=10.0).json()["usage"]
    # About 1.5 answers a minute... then 2 tokens a second back: the SDK waits Retry-After.
    per_minute = int(used["total_tokens"] * 1.5)
    plane.set_fault("gateway->llm", TokenRate(tokens_per_minute=per_minute))
    messages: Any = prompt.build_messages(QUESTION, PASSAGES)
    retries = RetryConfig("backoff", BackoffStrategy(100, 1000, 1.5, 60_000), retry_connection_errors=False)
    with Mistral(api_key="test-key", server_url=route, retry_config=retries) as client:
        client.chat.complete(model=MODEL, messages=messages)
        client.chat.complete(model=MODEL, messages=messages)  # leaves the budget spent
        started = time.monotonic()
        completion = client.chat.complete(model=MODEL, messages=messages)
        waited = time.monotonic() - started
    assert completion.choices[0].message is not None
    assert completion.choices[0].message.content == EXPECTED
    assert waited >= 1.0, "the client was refused, waited Retry-After and was then served"
    assert plane.stats("gateway->llm").requests_faulted >= 1


# -- degrade --------------------------------------------------------------------------------------


def test_degrade_corrupts_truncates_or_swaps_answers_with_status_200(plane: FaultPlane, route: str) -> None:
    other = chat_body()
    other["messages"] = prompt.build_messages("When does no dive happen?", PASSAGES)
    with httpx.Client(timeout=10.0) as client:
        first = client.post(f"{route}/v1/chat/completions", json=other).json()["choices"][0]["message"][
            "content"
        ]
        plane.set_fault("gateway->llm", Degrade(how=DegradeHow.SWAP))
        # The first answer under the fault has no other to swap with: it is truncated.
        swapped = client.post(f"{route}/v1/chat/completions", json=other).json()
        cut = swapped["choices"][0]["message"]["content"]
        assert first.startswith(cut) and cut != first
        swapped = client.post(f"{route}/v1/chat/completions", json=chat_body()).json()
        assert swapped["choices"][0]["message"]["content"] == first != EXPECTED, "another question's answer"

        plane.set_fault("gateway->llm", Degrade(how=DegradeHow.CORRUPT))
        response = client.post(f"{route}/v1/chat/completions", json=chat_body())
        assert response.status_code == 200
        corrupt = response.json()["choices"][0]["message"]["content"]
        assert len(corrupt) == len(EXPECTED) and corrupt != EXPECTED and "18 m" not in corrupt
        assert int(response.headers["content-length"]) == len(response.content)

        plane.set_fault("gateway->llm", Degrade(how=DegradeHow.TRUNCATE))
        short = client.post(f"{route}/v1/chat/completions", json=chat_body()).json()
        assert EXPECTED.startswith(short["choices"][0]["message"]["content"])
        assert len(short["choices"][0]["message"]["content"]) < len(EXPECTED)

        plane.clear_fault("gateway->llm")
        assert (
            client.post(f"{route}/v1/chat/completions", json=chat_body()).json()["choices"][0]["message"][
                "content"
            ]
            == EXPECTED
        )


def test_degrade_at_a_ratio_leaves_the_others_right(plane: FaultPlane, route: str) -> None:
    plane.set_fault("gateway->llm", Degrade(ratio=0.3))
    messages: Any = prompt.build_messages(QUESTION, PASSAGES)
    with Mistral(api_key="test-key", server_url=route) as client:
        answers = [client.chat.complete(model=MODEL, messages=messages) for _ in range(40)]
    texts = [a.choices[0].message.content for a in answers if a.choices[0].message is not None]
    wrong = sum(1 for t in texts if t != EXPECTED)
    assert len(texts) == 40 and 4 <= wrong <= 20, wrong
    assert plane.stats("gateway->llm").requests_faulted == wrong


@pytest.mark.slow
def test_a_degrade_run_keeps_availability_and_loses_correctness(tmp_path: Path) -> None:
    """scenarios/faults/degrade.yaml end to end on the local target: half the primary llm's answers
    corrupted for 10 s. Every request still succeeds; the graded answers' correctness drops."""
    out = tmp_path / "run"
    proc = run_bascule(ROOT / "scenarios" / "faults" / "degrade.yaml", out)
    assert proc.returncode == 1, proc.stdout + proc.stderr  # completed, correctness not met
    result = json.loads((out / "result.json").read_text())
    figures = result["figures"]
    assert figures["success_ratio"] >= 0.99, "availability holds"
    correctness = figures["correctness"]
    assert correctness["baseline"] >= 0.9
    assert correctness["impact"] <= correctness["baseline"] - 0.1, correctness
    dims = {d["name"]: d for d in result["score"]["dimensions"]}
    assert dims["availability"]["passed"] and not dims["correctness"]["passed"]


@pytest.mark.parametrize("state", [Ttft(delay=0.5), StreamCut(after_events=1000)], ids=["ttft", "stream-cut"])
def test_a_fault_ending_mid_stream_leaves_the_stream_whole(
    plane: FaultPlane, route: str, state: ProxyFault
) -> None:
    """The shaper re-framed the answer under way: it passes the rest of it, framed alike, then
    leaves; the client reads one well-formed stream, then plain relaying."""
    plane.set_fault("gateway->llm", state)
    with httpx.Client(timeout=10.0) as client:
        with client.stream("POST", f"{route}/v1/chat/completions", json=chat_body(stream=True)) as response:
            chunks = response.iter_raw()
            got = [next(chunks)]
            plane.clear_fault("gateway->llm")
            got += list(chunks)
        events = _events(b"".join(got))
        assert events[-1] == "[DONE]" and _text(events) == EXPECTED
        again = client.post(f"{route}/v1/chat/completions", json=chat_body(stream=True))
        assert _events(again.content)[-1] == "[DONE]"


def test_degrade_corrupts_streamed_answers_event_by_event(plane: FaultPlane, route: str) -> None:
    wrong = degrade_text(EXPECTED, DegradeHow.CORRUPT, None)
    plane.set_fault("gateway->llm", Degrade(how=DegradeHow.CORRUPT))
    response, _, chunks = _stream(route)
    events = _events(b"".join(c for _, c in chunks))
    assert response.status_code == 200 and events[-1] == "[DONE]"
    assert _text(events) == wrong != EXPECTED
    messages: Any = prompt.build_messages(QUESTION, PASSAGES)
    with (
        Mistral(api_key="test-key", server_url=route) as client,
        client.chat.stream(model=MODEL, messages=messages) as stream,
    ):
        deltas = [e.data.choices[0].delta.content for e in stream]
    assert "".join(d for d in deltas if isinstance(d, str)) == wrong
    # Truncating or swapping needs the whole answer: streams pass untouched.
    plane.set_fault("gateway->llm", Degrade(how=DegradeHow.TRUNCATE))
    _, _, chunks = _stream(route)
    assert _text(_events(b"".join(c for _, c in chunks))) == EXPECTED


def _is_foreign(text: str) -> bool:
    return any("\u0e00" <= c <= "\u0e7f" for c in text)


def test_degrade_tokens_puts_words_of_another_script_in_an_otherwise_intact_answer(
    plane: FaultPlane, route: str
) -> None:
    plane.set_fault("gateway->llm", Degrade(how=DegradeHow.TOKENS, tokens=0.3))
    messages: Any = prompt.build_messages(QUESTION, PASSAGES)
    with Mistral(api_key="test-key", server_url=route) as client:
        answer = client.chat.complete(model=MODEL, messages=messages)
        assert answer.choices[0].message is not None
        text = answer.choices[0].message.content
        assert isinstance(text, str) and text != EXPECTED and _is_foreign(text)
        words, expected = text.split(" "), EXPECTED.split(" ")
        assert len(words) == len(expected)
        kept = sum(w == e for w, e in zip(words, expected, strict=True))
        assert 0 < kept < len(expected), "some words replaced, the others intact"
        with client.chat.stream(model=MODEL, messages=messages) as stream:
            deltas = [e.data.choices[0].delta.content for e in stream]
    streamed = "".join(d for d in deltas if isinstance(d, str))
    assert streamed != EXPECTED and _is_foreign(streamed)


def test_sticky_degrade_draws_once_per_connection(plane: FaultPlane, route: str) -> None:
    """Sticky: a client that keeps its connection gets only wrong answers or only right ones; over
    many connections, both kinds, at about the ratio."""
    plane.set_fault("gateway->llm", Degrade(ratio=0.5, sticky=True))
    verdicts = []
    for _ in range(16):
        with httpx.Client(timeout=10.0) as client:  # one kept-alive connection per client
            texts = {
                client.post(f"{route}/v1/chat/completions", json=chat_body()).json()["choices"][0]["message"][
                    "content"
                ]
                for _ in range(5)
            }
        assert len(texts) == 1, "every answer on one connection degraded alike, or none"
        verdicts.append(texts.pop() != EXPECTED)
    assert 2 <= sum(verdicts) <= 14, verdicts
    assert plane.stats("gateway->llm").requests_faulted == 5 * sum(verdicts)
