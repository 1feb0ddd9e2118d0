"""The reference llm service, its prompt contract and the shared hashing embedding.

Servers run for real on 127.0.0.1 port 0: one as a subprocess through the module's entry point
(driven by the official ``mistralai`` client), the others as uvicorn servers in threads.
"""

from __future__ import annotations

import json
import selectors
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import replace
from typing import Any

import httpx
import numpy as np
import pytest
import uvicorn
from mistralai.client import Mistral
from mistralai.client.errors import SDKError

from bascule.stack import embedding, prompt
from bascule.stack.llm import LlmConfig, create_app, parse_args
from bascule.stack.prompt import Passage

MODEL = "mistral-small-latest"
PASSAGES = [
    Passage(
        "anchors-01",
        "Mooring and anchors",
        "Each SF-220 float is moored by four helical anchors. "
        "The anchors are screwed 18 m into the lake bed. "
        "Inspections happen every spring.",
    ),
    Passage(
        "panels-02",
        "Panels",
        "The panels are bifacial modules rated at 550 W. They tilt by 12 degrees.",
    ),
    Passage(
        "safety-03",
        "Safety",
        "Divers must work in pairs. No dive happens when the wind exceeds 40 km/h.",
    ),
]
QUESTION = "How deep are the SF-220 anchors screwed into the lake bed?"


# --- servers ---------------------------------------------------------------------------------


@contextmanager
def serve(config: LlmConfig, clock: Callable[[], float] = time.monotonic) -> Iterator[str]:
    """Run an llm app in a uvicorn thread on an ephemeral port; yield its base URL."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(
        uvicorn.Config(create_app(config, clock=clock), log_level="warning", lifespan="on")
    )
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 10
        while not server.started:
            assert thread.is_alive(), "llm server thread died during startup"
            assert time.monotonic() < deadline, "llm server did not start"
            time.sleep(0.005)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()
        assert not thread.is_alive(), "llm server thread did not stop"


@pytest.fixture(scope="module")
def llm_process() -> Iterator[str]:
    """The service started as ``python -m bascule.stack.llm --port 0``; yields its base URL."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "bascule.stack.llm", "--port", "0", "--model", MODEL],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        with selectors.DefaultSelector() as selector:
            selector.register(proc.stdout, selectors.EVENT_READ)
            ready = selector.select(timeout=15)
        line = proc.stdout.readline().strip() if ready else ""
        assert line.startswith("listening on http://127.0.0.1:"), (line, proc.poll())
        yield line.removeprefix("listening on ")
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)


@pytest.fixture(scope="module")
def mistral(llm_process: str) -> Iterator[Mistral]:
    with Mistral(api_key="test-key", server_url=llm_process) as client:
        yield client


@pytest.fixture(scope="module")
def llm_url() -> Iterator[str]:
    with serve(LlmConfig(model=MODEL, provider="scaleway")) as url:
        yield url


def chat_body(**extra: Any) -> dict[str, Any]:
    return {"model": MODEL, "messages": prompt.build_messages(QUESTION, PASSAGES), **extra}


def sse_events(response: httpx.Response) -> list[str]:
    """The ``data:`` payloads of an event stream, checking every event is data-only."""
    blocks = [block for block in response.text.split("\n\n") if block]
    assert all(block.startswith("data: ") for block in blocks), blocks
    return [block.removeprefix("data: ") for block in blocks]


# --- (a) the official mistralai client -------------------------------------------------------


def test_mistral_client_chat_stream_and_embedding(mistral: Mistral) -> None:
    messages: Any = prompt.build_messages(QUESTION, PASSAGES)
    expected = prompt.extract_answer(QUESTION, PASSAGES)

    completion = mistral.chat.complete(model=MODEL, messages=messages)
    choice = completion.choices[0]
    assert choice.message is not None
    assert choice.message.content == expected.text
    assert "18 m" in expected.text
    assert expected.citations[0] == "anchors-01"
    assert choice.finish_reason == "stop"
    assert completion.model == MODEL
    assert completion.usage.completion_tokens == len(expected.text.split())
    assert completion.usage.prompt_tokens
    assert completion.usage.total_tokens == (completion.usage.prompt_tokens + len(expected.text.split()))

    deltas: list[str] = []
    finish_reasons = []
    with mistral.chat.stream(model=MODEL, messages=messages) as stream:
        for event in stream:
            chunk = event.data.choices[0]
            if isinstance(chunk.delta.content, str):
                deltas.append(chunk.delta.content)
            finish_reasons.append(chunk.finish_reason)
            last_usage = event.data.usage
    assert "".join(deltas) == choice.message.content
    assert finish_reasons[-1] == "stop"
    assert all(reason is None for reason in finish_reasons[:-1])
    assert last_usage is not None
    assert last_usage.total_tokens == completion.usage.total_tokens

    texts = ["floating solar anchors", "divers work in pairs"]
    first = mistral.embeddings.create(model="mistral-embed", inputs=texts)
    second = mistral.embeddings.create(model="mistral-embed", inputs=texts)
    assert first.data is not None
    assert second.data is not None
    vectors = [item.embedding for item in first.data]
    assert [len(v or []) for v in vectors] == [1024, 1024]
    assert vectors == [item.embedding for item in second.data]
    np.testing.assert_allclose(vectors[0] or [], embedding.embed(texts[0]), rtol=1e-6)

    models = mistral.models.list()
    assert {card.id for card in models.data or [] if hasattr(card, "id")} == {
        MODEL,
        "mistral-embed",
    }


def test_mistral_client_sees_errors(mistral: Mistral) -> None:
    messages: Any = [{"role": "user", "content": "hi"}]
    with pytest.raises(SDKError) as caught:
        mistral.chat.complete(model="mistral-large-latest", messages=messages)
    assert caught.value.status_code == 400
    assert json.loads(caught.value.body)["type"] == "invalid_model"


def test_process_health_and_readiness(llm_process: str) -> None:
    assert httpx.get(f"{llm_process}/healthz").json() == {"status": "ok"}
    ready = httpx.get(f"{llm_process}/readyz")
    assert ready.status_code == 200
    assert ready.json()["model"] == MODEL


# --- (b) raw HTTP: wire format, errors, limits -----------------------------------------------


def test_stream_wire_format(llm_url: str) -> None:
    response = httpx.post(f"{llm_url}/v1/chat/completions", json=chat_body(stream=True))
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/event-stream")
    assert response.text.endswith("data: [DONE]\n\n")
    events = sse_events(response)
    assert events[-1] == "[DONE]"
    chunks = [json.loads(event) for event in events[:-1]]
    assert all(chunk["object"] == "chat.completion.chunk" for chunk in chunks)
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    assert chunks[-1]["choices"][0]["finish_reason"] == "stop"
    assert chunks[-1]["usage"]["completion_tokens"] == len(chunks) - 2
    assert all("usage" not in chunk for chunk in chunks[:-1])


def test_response_headers_name_model_and_provider(llm_url: str) -> None:
    response = httpx.post(f"{llm_url}/v1/chat/completions", json=chat_body())
    assert response.headers["x-bascule-model"] == MODEL
    assert response.headers["x-bascule-provider"] == "scaleway"
    assert "x-ratelimit-limit-req-minute" not in response.headers


def test_max_tokens_cuts_with_finish_reason_length(llm_url: str) -> None:
    response = httpx.post(f"{llm_url}/v1/chat/completions", json=chat_body(max_tokens=3))
    body = response.json()
    assert body["choices"][0]["finish_reason"] == "length"
    assert body["choices"][0]["message"]["content"] == "Each SF-220 float"
    assert body["usage"]["completion_tokens"] == 3

    streamed = httpx.post(f"{llm_url}/v1/chat/completions", json=chat_body(max_tokens=3, stream=True))
    chunks = [json.loads(event) for event in sse_events(streamed)[:-1]]
    text = "".join(chunk["choices"][0]["delta"].get("content", "") for chunk in chunks)
    assert text == "Each SF-220 float"
    assert chunks[-1]["choices"][0]["finish_reason"] == "length"


def test_stop_sequence_cuts_the_answer(llm_url: str) -> None:
    response = httpx.post(f"{llm_url}/v1/chat/completions", json=chat_body(stop=" [doc:"))
    body = response.json()
    assert body["choices"][0]["message"]["content"] == (
        "Each SF-220 float is moored by four helical anchors."
    )
    assert body["choices"][0]["finish_reason"] == "stop"


@pytest.mark.parametrize(
    ("content", "loc"),
    [
        (b"{not json", ["body"]),
        (json.dumps({"model": MODEL}).encode(), ["body", "messages"]),
        (json.dumps(chat_body(stream="yes")).encode(), ["body", "stream"]),
        (json.dumps(chat_body(temperature=-1)).encode(), ["body", "temperature"]),
        (
            json.dumps({"model": MODEL, "messages": [{"role": "robot", "content": "x"}]}).encode(),
            ["body", "messages", 0, "role"],
        ),
    ],
)
def test_malformed_body_gets_mistral_shaped_422(llm_url: str, content: bytes, loc: list[Any]) -> None:
    response = httpx.post(
        f"{llm_url}/v1/chat/completions",
        content=content,
        headers={"content-type": "application/json"},
    )
    assert response.status_code == 422
    body = response.json()
    assert body["object"] == "error"
    assert body["type"] == "invalid_request_message_error"
    assert body["param"] is None
    assert body["message"]["detail"][0]["loc"] == loc


def test_unknown_models_and_routes_are_refused(llm_url: str) -> None:
    chat = httpx.post(f"{llm_url}/v1/chat/completions", json=chat_body(model="gpt-4o"))
    assert chat.status_code == 400
    assert chat.json() == {
        "object": "error",
        "message": "Invalid model: gpt-4o",
        "type": "invalid_model",
        "param": None,
        "code": "1500",
    }
    embed_with_chat_model = httpx.post(f"{llm_url}/v1/embeddings", json={"model": MODEL, "input": "x"})
    assert embed_with_chat_model.status_code == 400
    wrong_dimension = httpx.post(
        f"{llm_url}/v1/embeddings",
        json={"model": "mistral-embed", "input": "x", "output_dimension": 256},
    )
    assert wrong_dimension.status_code == 400
    assert httpx.get(f"{llm_url}/v1/models/mistral-large-latest").status_code == 404
    assert httpx.get(f"{llm_url}/v1/models/{MODEL}").json()["id"] == MODEL
    missing = httpx.get(f"{llm_url}/v1/nothing")
    assert missing.status_code == 404
    assert missing.json()["object"] == "error"
    assert httpx.get(f"{llm_url}/v1/chat/completions").status_code == 405


def test_embeddings_accept_a_single_string(llm_url: str) -> None:
    response = httpx.post(f"{llm_url}/v1/embeddings", json={"model": "mistral-embed", "input": "anchors"})
    body = response.json()
    assert body["object"] == "list"
    assert body["model"] == "mistral-embed"
    assert [item["index"] for item in body["data"]] == [0]
    assert len(body["data"][0]["embedding"]) == embedding.DIMENSIONS
    assert body["usage"]["prompt_tokens"] == 1
    empty = httpx.post(f"{llm_url}/v1/embeddings", json={"model": "mistral-embed", "input": []})
    assert empty.status_code == 422


def test_rate_limit_of_one_per_minute() -> None:
    with serve(LlmConfig(model=MODEL, rate_limit_per_minute=1)) as url:
        first = httpx.post(f"{url}/v1/chat/completions", json=chat_body())
        assert first.status_code == 200
        assert first.headers["x-ratelimit-limit-req-minute"] == "1"
        assert first.headers["x-ratelimit-remaining-req-minute"] == "0"
        second = httpx.post(f"{url}/v1/chat/completions", json=chat_body())
        assert second.status_code == 429
        assert second.json() == {
            "object": "error",
            "message": "Rate limit exceeded",
            "type": "rate_limited",
            "param": None,
            "code": "1300",
        }
        assert second.headers["x-ratelimit-limit-req-minute"] == "1"
        assert second.headers["x-ratelimit-remaining-req-minute"] == "0"
        assert 1 <= int(second.headers["retry-after"]) <= 60
        embeddings = httpx.post(f"{url}/v1/embeddings", json={"model": "mistral-embed", "input": "x"})
        assert embeddings.status_code == 429
        assert httpx.get(f"{url}/healthz").status_code == 200


def test_rate_limit_window_slides_and_counts_tokens() -> None:
    now = [1000.0]
    config = LlmConfig(model=MODEL, rate_limit_per_minute=2, tokens_limit_per_minute=10_000)
    with serve(config, clock=lambda: now[0]) as url, httpx.Client(base_url=url) as client:
        first = client.post("/v1/chat/completions", json=chat_body())
        used = first.json()["usage"]["total_tokens"]
        assert first.headers["x-ratelimit-limit-tokens-minute"] == "10000"
        assert first.headers["x-ratelimit-remaining-tokens-minute"] == str(10_000 - used)
        now[0] += 30
        assert client.post("/v1/chat/completions", json=chat_body()).status_code == 200
        refused = client.post("/v1/chat/completions", json=chat_body())
        assert refused.status_code == 429
        assert refused.headers["retry-after"] == "30"
        now[0] += 30.5
        again = client.post("/v1/chat/completions", json=chat_body())
        assert again.status_code == 200
        assert again.headers["x-ratelimit-remaining-req-minute"] == "0"

    tight = LlmConfig(model=MODEL, tokens_limit_per_minute=10)
    with serve(tight) as url, httpx.Client(base_url=url) as client:
        assert client.post("/v1/chat/completions", json=chat_body()).status_code == 200
        exhausted = client.post("/v1/chat/completions", json=chat_body())
        assert exhausted.status_code == 429
        assert exhausted.headers["x-ratelimit-remaining-tokens-minute"] == "0"


# --- (c) the prompt contract and the embedding -----------------------------------------------


def test_build_and_parse_context_round_trip() -> None:
    messages = prompt.build_messages(QUESTION, PASSAGES)
    assert [m["role"] for m in messages] == ["system", "user"]
    assert "[doc:panels-02] Panels\nThe panels are bifacial" in messages[0]["content"]
    assert prompt.parse_context(messages) == (QUESTION, PASSAGES)


def test_parse_context_tolerates_prompts_without_context() -> None:
    assert prompt.parse_context([{"role": "user", "content": "Hello?"}]) == ("Hello?", [])
    assert prompt.parse_context([]) == ("", [])
    chunked: list[dict[str, Any]] = [
        {"role": "system", "content": [{"type": "text", "text": "Be brief."}]},
        {"role": "assistant", "content": None},
        {"role": "user", "content": [{"type": "text", "text": "Why?"}]},
    ]
    assert prompt.parse_context(chunked) == ("Why?", [])
    inline = f"{QUESTION}\n\nContext:\n[doc:x] T\nThe anchors are 18 m deep."
    question, passages = prompt.parse_context([{"role": "user", "content": inline}])
    assert question == QUESTION
    assert passages == [Passage("x", "T", "The anchors are 18 m deep.")]


def test_extract_answer_picks_relevant_sentences_in_order() -> None:
    answer = prompt.extract_answer("Which modules, and how many degrees do they tilt?", PASSAGES)
    assert answer.text == (
        "The panels are bifacial modules rated at 550 W. [doc:panels-02] "
        "They tilt by 12 degrees. [doc:panels-02]"
    )
    assert answer.citations == ("panels-02",)
    assert prompt.parse_citations(answer.text) == answer.citations

    mixed = prompt.extract_answer("When do divers inspect the anchors?", PASSAGES, max_sentences=3)
    assert mixed.citations == ("anchors-01", "safety-03")
    assert mixed.text.index("[doc:anchors-01]") < mixed.text.index("[doc:safety-03]")


def test_extract_answer_weights_rare_tokens_and_breaks_ties_by_order() -> None:
    passages = [
        Passage("a", "", "Floats are grey. Floats hold panels."),
        Passage("b", "", "Floats are grey."),
    ]
    # "grey" appears in both passages, "panels" only in one: the rarer token wins.
    assert prompt.extract_answer("grey panels", passages, max_sentences=1).text == (
        "Floats hold panels. [doc:a]"
    )
    assert prompt.extract_answer("grey", passages, max_sentences=1).citations == ("a",)


def test_extract_answer_without_context_or_overlap() -> None:
    empty = prompt.extract_answer(QUESTION, [])
    assert empty == prompt.ExtractedAnswer(prompt.NO_CONTEXT_ANSWER, ())
    unrelated = prompt.extract_answer("Who is the CEO?", PASSAGES)
    assert unrelated.citations == ()
    assert unrelated.text == prompt.NOT_IN_CONTEXT_ANSWER
    with pytest.raises(ValueError, match="max_sentences"):
        prompt.extract_answer(QUESTION, PASSAGES, max_sentences=0)


def test_tokenize() -> None:
    assert embedding.tokenize("The SF-220 float is 18 m long, isn't it?") == [
        "sf-220",
        "float",
        "18",
        "long",
        "isn",
    ]
    assert embedding.tokenize("Énergie SOLAIRE flottante v1.2") == [
        "énergie",
        "solaire",
        "flottante",
        "v1.2",
    ]
    assert embedding.tokenize("the and of") == []


def test_embedding_is_deterministic_normalised_and_meaningful() -> None:
    vector = embedding.embed("floating solar anchors in the lake")
    assert vector.dtype == np.float32
    assert vector.shape == (embedding.DIMENSIONS,)
    assert float(np.linalg.norm(vector)) == pytest.approx(1.0, abs=1e-6)
    assert np.array_equal(vector, embedding.embed("floating solar anchors in the lake"))
    # A fresh interpreter hashes with a different PYTHONHASHSEED; the vector must not change.
    code = (
        "from bascule.stack.embedding import embed;"
        "print(embed('floating solar anchors in the lake').tobytes().hex())"
    )
    other = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=30
    )
    assert other.stdout.strip() == vector.tobytes().hex()

    close = embedding.embed("anchors of the floating solar plant")
    far = embedding.embed("quarterly payroll spreadsheet deadline")
    assert embedding.cosine(vector, close) > embedding.cosine(vector, far) + 0.2
    assert embedding.cosine(vector, embedding.embed("")) == 0.0
    matrix = embedding.embed_many(["a lake", "the anchors"])
    assert matrix.shape == (2, embedding.DIMENSIONS)
    assert embedding.embed_many([]).shape == (0, embedding.DIMENSIONS)


# --- (d) latency profile ---------------------------------------------------------------------


def test_ttft_and_tokens_per_second_pacing() -> None:
    config = LlmConfig(model=MODEL, ttft=0.2, tokens_per_second=100.0)
    with serve(config) as url, httpx.Client(base_url=url) as client:
        started = time.monotonic()
        with client.stream("POST", "/v1/chat/completions", json=chat_body(stream=True)) as response:
            lines = response.iter_lines()
            first = next(line for line in lines if line)
            first_at = time.monotonic() - started
            rest = [line for line in lines if line]
        total = time.monotonic() - started
        assert json.loads(first.removeprefix("data: "))["choices"][0]["delta"]["role"]
        tokens = len(rest) - 2
        assert first_at >= 0.2
        assert total >= 0.2 + tokens / 100.0

        started = time.monotonic()
        body = client.post("/v1/chat/completions", json=chat_body()).json()
        elapsed = time.monotonic() - started
        assert elapsed >= 0.2 + body["usage"]["completion_tokens"] / 100.0


def test_zero_latency_profile_answers_at_once(llm_url: str) -> None:
    with httpx.Client(base_url=llm_url) as client:
        client.post("/v1/chat/completions", json=chat_body())
        started = time.monotonic()
        client.post("/v1/chat/completions", json=chat_body(stream=True))
        assert time.monotonic() - started < 0.5


# --- configuration ---------------------------------------------------------------------------


def test_parse_args_flags_and_environment() -> None:
    assert parse_args([], environ={}) == LlmConfig()
    env = {
        "BASCULE_LLM_MODEL": "mistral-large-latest",
        "BASCULE_LLM_TTFT": "0.5",
        "BASCULE_LLM_RATE_LIMIT_PER_MINUTE": "60",
    }
    config = parse_args(["--port", "0", "--ttft", "0.25", "--provider", "ovh"], environ=env)
    assert config == replace(
        LlmConfig(),
        port=0,
        model="mistral-large-latest",
        provider="ovh",
        ttft=0.25,
        rate_limit_per_minute=60,
    )
    for bad in (["--ttft", "-1"], ["--port", "70000"], ["--tokens-per-second", "nan"]):
        with pytest.raises(SystemExit):
            parse_args(bad, environ={})
    with pytest.raises(SystemExit):
        parse_args([], environ={"BASCULE_LLM_RATE_LIMIT_PER_MINUTE": "lots"})
