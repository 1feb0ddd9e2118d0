"""Load generation (`bascule.load`): the pure parts (schedule, mix, edge, samples, stream
tail), then locust for real — its own processes, against a running local stack, samples streamed
back while it runs."""

from __future__ import annotations

import json
import math
import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest

from bascule.edge import Edge, EdgeResponse, NoEntryError
from bascule.errors import PlanError
from bascule.journal.samples import RequestSample, sample_to_json
from bascule.load.generator import LOCUSTFILE, LoadGenerator, _Tail
from bascule.load.mix import build_request, draw_request, edge_post, golden_pool, sample_from_response
from bascule.load.schedule import CONFIG_ENV, STREAM_ENV, LoadConfig, compute_schedule, parse_load_config
from bascule.model.loading import read_design
from bascule.model.scenario import Load
from bascule.stack.corpus import load_golden_set
from bascule.stack.supervisor import pid_is
from bascule.targets.local.stack import LocalStack

ROOT = Path(__file__).resolve().parent.parent
APS_PATH = ROOT / "designs" / "active-passive-sovereign.yaml"
APS = read_design(APS_PATH)
ENTRIES = {"aws/us-east-1": "http://aws.test", "scaleway/fr-par": "http://par.test"}
GOLDEN = load_golden_set()

# locust needs one to three seconds to start (more on a busy machine): the load's origin is set
# that far ahead, as the runner does, so that the whole window is loaded.
LEAD = 2.5


def _mix(writes: float = 0.2) -> dict[str, Any]:
    return {"data_classes": {"internal": 0.7, "confidential": 0.3}, "writes": writes}


# -- the module stays free of locust -----------------------------------------------------------


def test_importing_load_imports_neither_locust_nor_gevent() -> None:
    code = (
        "import sys, bascule.load\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('locust', 'gevent', 'zmq'))\n"
        "print(bad)\n"
        "sys.exit(1 if bad else 0)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], check=False, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_the_pure_load_modules_import_neither_the_driver_nor_the_runner() -> None:
    # What the locustfile imports of bascule's load package: its configuration, schedule and mix.
    code = (
        "import sys, bascule.load.schedule, bascule.load.mix\n"
        "bad = sorted(m for m in sys.modules\n"
        "             if m == 'bascule.load.generator' or m.startswith('bascule.runner'))\n"
        "print(bad)\n"
        "sys.exit(1 if bad else 0)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], check=False, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_locustfile_refuses_to_run_without_its_configuration(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k not in (CONFIG_ENV, STREAM_ENV)}
    done = subprocess.run(
        [sys.executable, "-m", "locust", "-f", str(LOCUSTFILE), "--headless", "--run-time", "1s"],
        check=False,
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        cwd=tmp_path,
    )
    assert done.returncode != 0
    assert CONFIG_ENV in done.stderr


# -- pure parts ----------------------------------------------------------------------------------


def test_config_round_trips_through_json() -> None:
    config = LoadConfig(
        design_path=str(APS_PATH),
        design_text=APS_PATH.read_text(),
        entries=ENTRIES,
        load=Load(users=3, mix=_mix()).model_dump(mode="json", by_alias=True),
        duration=5.0,
        origin=123.5,
        seed=7,
        marker="abc",
    )
    again = parse_load_config(config.to_json())
    assert again == config
    assert again.design().id == APS.id and again.load_spec().users == 3
    with pytest.raises(ValueError, match="not a load configuration"):
        parse_load_config('{"design_path": "x"}')


def test_closed_model_ramps_then_steps() -> None:
    load = Load.model_validate({"users": 10, "ramp_up": "4s", "steps": [{"at": "6s", "users": 3}]})
    schedule = compute_schedule(APS, load, 10.0)
    assert schedule.user_rate is None and schedule.peak_users == 10
    assert schedule.tick(-5.0) == (0, 100.0)
    # One tick ahead of the origin, the users due at the first tick, at the ramp's pace.
    assert schedule.tick(-0.5) == (3, 2.5)
    assert schedule.tick(1.0) == (5, 2.5)
    assert schedule.tick(3.5) == (10, 2.5)
    assert schedule.tick(4.5) == (10, 100.0)
    assert schedule.tick(6.0) == (3, 100.0)
    assert schedule.tick(9.99) == (3, 100.0)
    assert schedule.tick(10.0) is None


def test_open_model_rate_becomes_paced_users() -> None:
    # The design's timeouts (0.3 s connect + 3 s request) give each user a 3.3 s slot.
    load = Load.model_validate({"rate": 5, "steps": [{"at": "2s", "rate": 20}, {"at": "4s", "rate": 0}]})
    schedule = compute_schedule(APS, load, 6.0)
    assert schedule.user_rate == pytest.approx(20 / 66)
    assert schedule.levels == ((0.0, 17), (2.0, 66), (4.0, 0))
    assert schedule.tick(2.5) == (66, 660.0)
    assert schedule.tick(4.5) == (0, 660.0)


def test_loads_that_do_not_fit_the_design_are_refused_with_their_place() -> None:
    unknown = Load.model_validate({"users": 2, "mix": {"data_classes": {"secret": 1.0}}})
    with pytest.raises(PlanError) as caught:
        compute_schedule(APS, unknown, 5.0)
    paths = [p.path for p in caught.value.problems]
    assert paths == [("load", "mix", "data_classes", "secret")]
    weightless = Load.model_validate({"users": 2, "mix": {"data_classes": {"internal": 0}}})
    with pytest.raises(PlanError) as caught:
        compute_schedule(APS, weightless, 5.0)
    assert [p.path for p in caught.value.problems] == [("load", "mix", "data_classes")]
    mixed = Load.model_validate({"users": 2, "steps": [{"at": "1s", "rate": 4}]})
    with pytest.raises(PlanError) as caught:
        compute_schedule(APS, mixed, 5.0)
    assert [p.path for p in caught.value.problems] == [("load", "steps", 0)]
    with pytest.raises(ValueError, match="above 0"):
        compute_schedule(APS, Load(users=1), 0.0)


def test_draws_follow_the_mix() -> None:
    mix = Load(users=1, mix=_mix(writes=0.2)).mix
    rng = random.Random(1)
    draws = [draw_request(rng, mix) for _ in range(20_000)]
    writes = sum(1 for kind, _ in draws if kind == "write") / len(draws)
    confidential = sum(1 for _, c in draws if c == "confidential") / len(draws)
    assert writes == pytest.approx(0.2, abs=0.015)
    assert confidential == pytest.approx(0.3, abs=0.015)
    again = random.Random(1)
    assert [draw_request(again, mix) for _ in range(50)] == draws[:50]


def test_golden_pool_prefers_the_class_then_less_sensitive_ones() -> None:
    assert {q.data_class.value for q in golden_pool(GOLDEN, "confidential")} == {"confidential"}
    publics = [q for q in GOLDEN if q.data_class.value == "public"]
    secrets = [q for q in GOLDEN if q.data_class.value == "confidential"]
    assert golden_pool([*publics, *secrets], "internal") == tuple(publics)
    assert golden_pool(secrets, "public") == tuple(secrets)
    assert golden_pool(publics, "top-secret") == tuple(publics)


class FakeServer:
    """`Send` for `edge_post`: a status (or a transport error) per region."""

    def __init__(self, answers: Mapping[str, int | None]) -> None:
        self.answers = dict(answers)
        self.calls: list[str] = []
        self.headers: list[Mapping[str, str]] = []

    def __call__(
        self, region: str, url: str, payload: Mapping[str, Any], headers: Mapping[str, str]
    ) -> tuple[int | None, dict[str, Any] | None, str | None]:
        self.calls.append(url)
        self.headers.append(headers)
        status = self.answers[region]
        if status is None:
            return None, None, "ConnectError: refused"
        body = {"answer": "ok", "served_by": [{"component": "gateway", "region": region}]}
        return status, body if status < 400 else {"error": "x", "message": f"from {region}"}, None


def test_edge_post_fails_over_in_routing_order_and_skips_an_open_breaker() -> None:
    now = [100.0]
    edge = Edge(APS, ENTRIES, clock=lambda: now[0])
    server = FakeServer({"aws/us-east-1": 503, "scaleway/fr-par": 200})
    first = edge_post(edge, server, "/v1/ask", {"question": "q"}, "internal", clock=lambda: now[0])
    assert first.ok and first.region == "scaleway/fr-par"
    assert [a.region for a in first.attempts] == ["aws/us-east-1", "scaleway/fr-par"]
    assert server.calls == ["http://aws.test/v1/ask", "http://par.test/v1/ask"]
    for _ in range(4):  # the design's breaker opens at the fifth failure
        edge_post(edge, server, "/v1/ask", {}, "internal", clock=lambda: now[0])
    server.calls.clear()
    edge_post(edge, server, "/v1/ask", {}, "internal", clock=lambda: now[0])
    assert server.calls == ["http://par.test/v1/ask"]
    server.answers["scaleway/fr-par"] = None
    server.calls.clear()
    # Nothing else left: the open region is tried last rather than not at all.
    failed = edge_post(edge, server, "/v1/ask", {}, "internal", clock=lambda: now[0])
    assert server.calls == ["http://par.test/v1/ask", "http://aws.test/v1/ask"]
    assert not failed.ok and failed.status == 503


def test_edge_post_stops_at_a_client_error_and_keeps_confidential_data_sovereign() -> None:
    edge = Edge(APS, ENTRIES)
    server = FakeServer({"aws/us-east-1": 403, "scaleway/fr-par": 200})
    refused = edge_post(edge, server, "/v1/ask", {}, "internal")
    assert refused.status == 403 and len(refused.attempts) == 1 and refused.error == "from aws/us-east-1"
    server.answers["scaleway/fr-par"] = None
    down = edge_post(edge, server, "/v1/ask", {}, "confidential")
    assert [a.region for a in down.attempts] == ["scaleway/fr-par"]
    assert down.error == "ConnectError: refused"
    with pytest.raises(NoEntryError):
        edge_post(Edge(APS, {"aws/us-east-1": "http://aws.test"}), server, "/v1/ask", {}, "confidential")


def test_samples_grade_answers_and_keep_the_trace() -> None:
    question = next(q for q in GOLDEN if q.data_class.value == "internal")
    body = {
        "answer": " and ".join(question.facts),
        "citations": list(question.cites),
        "degraded": True,
        "served_by": [{"component": "gateway", "region": "aws/us-east-1", "sovereignty": "foreign"}],
    }
    answered = EdgeResponse(200, body, "aws/us-east-1", (), 0.25)
    graded = sample_from_response("ask", "internal", 5.0, answered, question=question)
    assert graded.correct is True and graded.degraded and graded.latency == 0.25 and graded.started == 5.0
    assert graded.entry_region == "aws/us-east-1" and graded.hops[0].sovereignty == "foreign"
    wrong = EdgeResponse(200, {"answer": "no idea"}, "aws/us-east-1", (), 0.1)
    assert sample_from_response("ask", "internal", 5.0, wrong, question=question).correct is False
    lost = sample_from_response(
        "write", "internal", 5.0, EdgeResponse(None, None, "aws/us-east-1", (), 3.3), request_id="load-1"
    )
    assert not lost.ok and lost.correct is None and lost.entry_region is None and lost.request_id == "load-1"


def test_stream_tail_keeps_partial_lines_and_drops_overlong_ones(tmp_path: Path) -> None:
    path = tmp_path / "s.jsonl"
    tail = _Tail(path, max_line=100)
    assert tail.read() == []  # not created yet
    line = json.dumps(sample_to_json(RequestSample("load", "ask", 1.0, 0.1, True))).encode()
    with path.open("ab") as out:
        out.write(line[:10])
        out.flush()
        assert tail.read() == []
        out.write(line[10:] + b"\n" + b"x" * 150)
        out.flush()
        assert tail.read() == [line]
        out.write(b"y" * 10 + b"\n" + line + b"\n")
        out.flush()
        assert tail.read() == [line]
    assert tail.dropped == 1
    tail.close()


# -- locust for real ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    running = LocalStack.start(APS, APS_PATH, tmp_path_factory.mktemp("stack"), timeout=60)
    try:
        yield running
    finally:
        running.stop()


def _gone(generator: LoadGenerator) -> bool:
    return all(p.start_time is None or not pid_is(p.pid, p.start_time) for p in generator.processes)


def _within(share: float, expected: float, n: int) -> bool:
    return abs(share - expected) <= 4 * math.sqrt(expected * (1 - expected) / n)


def test_users_against_the_stack_stream_samples_in_the_mix(stack: LocalStack, tmp_path: Path) -> None:
    origin = time.monotonic() + LEAD
    duration = 5.0
    load = Load.model_validate({"users": 5, "think_time": 0.05, "mix": _mix(writes=0.2)})
    samples: list[RequestSample] = []
    while_running = 0
    with LoadGenerator.start(
        APS_PATH, stack.entries(), load, duration, tmp_path, origin=origin, seed=3
    ) as gen:
        assert [p.role for p in gen.processes] == ["standalone"]
        for sample in gen.samples():
            samples.append(sample)
            while_running += gen.running() and time.monotonic() < origin + duration
        assert gen.returncodes() == {"standalone": 0} and not gen.expired and gen.malformed == 0
    assert _gone(gen)
    n = len(samples)
    assert n >= 30, f"only {n} samples in {duration} s"
    assert while_running >= n // 2, "samples were not consumed while the load ran"
    assert all(origin <= s.started < origin + duration for s in samples)
    assert all(s.source == "load" for s in samples)
    failed = [s for s in samples if not s.ok]
    assert len(failed) <= n * 0.05, failed[:3]
    writes = [s for s in samples if s.kind == "write"]
    assert _within(len(writes) / n, 0.2, n)
    assert all(s.request_id and s.request_id.startswith("load-") for s in writes)
    asks = [s for s in samples if s.kind == "ask" and s.ok]
    confidential = [s for s in samples if s.data_class == "confidential"]
    assert _within(len(confidential) / n, 0.3, n)
    assert {s.entry_region for s in asks if s.data_class == "internal"} == {"aws/us-east-1"}
    assert {s.entry_region for s in confidential if s.ok} == {"scaleway/fr-par"}
    assert all(h.sovereignty == "sovereign" for s in confidential for h in s.hops)
    assert all(s.hops for s in samples if s.ok)
    correct = sum(1 for s in asks if s.correct)
    assert correct >= 0.8 * len(asks), f"{correct}/{len(asks)} correct"
    print(
        f"\n{n} samples in {duration:g} s from 5 users ({n / duration:.0f}/s), {correct}/{len(asks)} correct"
    )


def test_stop_and_the_deadline_leave_no_locust_process(stack: LocalStack, tmp_path: Path) -> None:
    load = Load(users=2, think_time=0.1)
    gen = LoadGenerator.start(APS_PATH, stack.entries(), load, 60.0, tmp_path)
    try:
        assert all(p.start_time is not None for p in gen.processes)
        assert gen.pids() == [(p.pid, p.start_time) for p in gen.processes]
        got: list[RequestSample] = []
        until = time.monotonic() + 30
        while len(got) < 5 and time.monotonic() < until:
            got += gen.poll()
            time.sleep(0.05)
        assert len(got) >= 5 and gen.running()
        began = time.monotonic()
        gen._expire()  # what the watchdog does at the hard deadline
        assert time.monotonic() - began < 6
        assert gen.expired and not gen.running() and _gone(gen)
        gen.stop()
        gen.poll()
        size = (tmp_path / "load" / "standalone.jsonl").stat().st_size
        time.sleep(0.3)
        assert (tmp_path / "load" / "standalone.jsonl").stat().st_size == size
    finally:
        gen.close()


@pytest.mark.slow
def test_two_workers_each_stream_their_samples(stack: LocalStack, tmp_path: Path) -> None:
    origin = time.monotonic() + 2 * LEAD
    load = Load(users=6, think_time=0.05)
    with LoadGenerator.start(APS_PATH, stack.entries(), load, 4.0, tmp_path, workers=2, origin=origin) as gen:
        assert [p.role for p in gen.processes] == ["master", "worker-1", "worker-2"]
        assert gen.master_port
        samples = list(gen.samples())
    assert _gone(gen)
    assert gen.received["worker-1"] > 0 and gen.received["worker-2"] > 0 and gen.received["master"] == 0
    assert len(samples) == sum(gen.received.values())
    assert all(s.started < origin + 4.0 for s in samples)


@pytest.mark.slow
def test_a_worker_attached_by_hand_sends_its_samples_through_the_master(
    stack: LocalStack, tmp_path: Path
) -> None:
    origin = time.monotonic() + 2 * LEAD
    load = Load(users=3, think_time=0.05)
    with LoadGenerator.start(
        APS_PATH, stack.entries(), load, 4.0, tmp_path, remote_workers=1, origin=origin
    ) as gen:
        assert [p.role for p in gen.processes] == ["master"]
        # As docs/load.md says for a worker on another machine: the configuration, no stream.
        env = {k: v for k, v in os.environ.items() if k != STREAM_ENV}
        env[CONFIG_ENV] = (gen.directory / "config.json").read_text()
        argv = [sys.executable, "-m", "locust", "-f", str(LOCUSTFILE), "--worker"]
        argv += ["--master-host", "127.0.0.1", "--master-port", str(gen.master_port)]
        with (tmp_path / "remote.log").open("wb") as log:
            remote = subprocess.Popen(
                argv, env=env, cwd=tmp_path, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )
        try:
            samples = list(gen.samples())
            assert remote.wait(15) == 0
        finally:
            if remote.poll() is None:
                os.killpg(remote.pid, signal.SIGKILL)
                remote.wait()
    assert gen.received["master"] == len(samples) > 10
    # Moved onto the master's clock, which is this machine's: within the window, give or take.
    assert all(origin - 0.5 < s.started < origin + 4.5 for s in samples)


@pytest.mark.slow
def test_an_arrival_rate_is_kept_while_the_stack_keeps_up(stack: LocalStack, tmp_path: Path) -> None:
    origin = time.monotonic() + LEAD
    load = Load(rate=12.0)
    with LoadGenerator.start(APS_PATH, stack.entries(), load, 5.0, tmp_path, origin=origin) as gen:
        samples = list(gen.samples())
    expected = 12.0 * 5.0
    assert 0.7 * expected <= len(samples) <= 1.2 * expected, len(samples)
    # Spread over the window, not in bursts a period apart.
    per_second = [sum(1 for s in samples if int(s.started - origin) == k) for k in range(5)]
    assert max(per_second) <= 2.5 * 12, per_second


def test_requests_follow_the_templates_of_a_service_of_your_own() -> None:
    pools = {"internal": golden_pool(load_golden_set(), "internal")}
    rng = random.Random(7)
    reference = Load.model_validate({"users": 1}).requests
    question, path, payload, request_id = build_request(reference, "ask", "internal", rng, pools, "m")
    assert question is not None and path == "/v1/ask" and request_id is None
    assert payload == {"question": question.question, "data_class": "internal"}
    _, path, document, request_id = build_request(reference, "write", "internal", rng, pools, "m")
    assert path == "/v1/documents" and document["id"] == request_id and document["tags"] == ["synthetic"]

    own = Load.model_validate(
        {
            "users": 1,
            "requests": {
                "ask_path": "/api/search",
                "ask": {"q": "{question}", "meta": {"class": "{data_class}"}},
                "questions": ["Where are the pumps?"],
                "write_path": "/api/notes",
                "write": {"note_id": "{id}", "body": "{text}"},
            },
        }
    ).requests
    question, path, payload, _ = build_request(own, "ask", "internal", rng, pools, "m")
    assert question is None, "a question of your own is not graded"
    assert (path, payload) == ("/api/search", {"q": "Where are the pumps?", "meta": {"class": "internal"}})
    _, path, payload, request_id = build_request(own, "write", "internal", rng, pools, "m")
    assert path == "/api/notes" and payload["note_id"] == request_id and "bascule-load-m" in payload["body"]
    with pytest.raises(ValueError, match="starting with '/'"):
        Load.model_validate({"users": 1, "requests": {"ask_path": "api/search"}})


def test_every_attempt_of_a_load_request_carries_its_trace() -> None:
    from bascule.tracecontext import new_trace_id, parse_traceparent

    edge = Edge(APS, ENTRIES)
    server = FakeServer({"aws/us-east-1": 503, "scaleway/fr-par": 200})
    trace = new_trace_id()
    answer = edge_post(edge, server, "/v1/ask", {"question": "q"}, "internal", trace_id=trace)
    assert answer.ok and len(server.headers) == 2
    assert [parse_traceparent(h["traceparent"]) for h in server.headers] == [trace, trace]
    assert server.headers[0]["traceparent"] != server.headers[1]["traceparent"]  # one span per attempt
    sample = sample_from_response("ask", "internal", 0.0, answer, trace_id=trace)
    assert sample.trace_id == trace
