"""Faults on answers that strike nothing relay as no fault does (issue 18): decided per state when it
is set (`faultstate.strikes_nothing`), and per answer at its head (`Shaper.acts_on`) — and an answer
at the edge of a cut is still cut."""

from __future__ import annotations

import httpx
import pytest

from bascule.targets.local import faultstate as fs
from bascule.targets.local.proxy import FaultPlane
from tests.test_llm import chat_body


def test_which_states_strike_nothing() -> None:
    idle = [
        fs.Ttft(delay=0.0),
        fs.Degrade(ratio=0.0, sticky=True),
        fs.PartialIndex(ratio=0.0),
        fs.Latency(fixed=0.0),
        fs.Latency(per=fs.LatencyPer.CONNECTION),
        fs.HttpError(ratio=0.0),
        fs.HttpError(statuses=(500, 502), ratio=0.0),
        fs.Throttle(ratio=0.0),
    ]
    acting = [
        fs.Ttft(delay=0.001),
        fs.Degrade(ratio=0.01),
        fs.PartialIndex(ratio=0.5),
        fs.ModelSwap(ratio=0.0),  # still relabels every answer
        fs.TokenRate(tokens_per_minute=10**15),  # still adds its headers and charges
        fs.StreamCut(after_events=10**15),
        fs.Latency(jitter=0.001),
        fs.HttpError(ratio=0.001),
        fs.HttpError(every=10**15),  # counts the requests it meets
        fs.Throttle(ratio=0.5),
        fs.Bandwidth(rate=10**15),
        fs.LimitData(limit=10**15),
        fs.Pass(),
    ]
    assert all(fs.strikes_nothing(s) and fs.in_force(s) == fs.Pass() for s in idle)
    assert not any(fs.strikes_nothing(s) for s in acting)
    assert all(fs.in_force(s) is s for s in acting)


def _answer(route: str) -> httpx.Response:
    return httpx.post(f"{route}/v1/chat/completions", json=chat_body(), timeout=10.0)


def test_an_idle_state_is_reported_and_relays_answers_as_they_came(plane: FaultPlane, route: str) -> None:
    plain = _answer(route)
    for state in (fs.Degrade(ratio=0.0), fs.Ttft(delay=0.0), fs.PartialIndex(ratio=0.0)):
        plane.set_fault("r", state)
        assert plane.fault("r") == state
        got = _answer(route)
        assert got.status_code == 200 and got.json()["choices"] == plain.json()["choices"]
    assert plane.stats("r").requests_faulted == 0
    # From idle to striking, on a connection opened while idle: the fault reaches it.
    with httpx.Client(timeout=10.0) as client:
        plane.set_fault("r", fs.Degrade(ratio=0.0))
        client.post(f"{route}/v1/chat/completions", json=chat_body())
        plane.set_fault("r", fs.Degrade(ratio=1.0))
        struck = client.post(f"{route}/v1/chat/completions", json=chat_body()).json()
    assert struck["choices"][0]["message"]["content"] != plain.json()["choices"][0]["message"]["content"]
    assert plane.stats("r").requests_faulted == 1


def test_a_body_shorter_than_the_cut_passes_and_a_longer_one_is_cut(plane: FaultPlane, route: str) -> None:
    plain = _answer(route)
    length = len(plain.content)
    plane.set_fault("r", fs.StreamCut(after_bytes=length + 1, how=fs.CutHow.EOF))
    with httpx.Client(timeout=10.0) as client:  # one connection: the answers that pass keep it
        for _ in range(3):
            got = client.post(f"{route}/v1/chat/completions", json=chat_body())
            assert got.status_code == 200 and len(got.content) == length
    assert plane.stats("r").requests_faulted == 0
    plane.set_fault("r", fs.StreamCut(after_bytes=length - 1, how=fs.CutHow.EOF))
    with pytest.raises(httpx.RemoteProtocolError):
        _answer(route)  # closed one byte short of its Content-Length
    assert plane.stats("r").requests_faulted == 1


def test_the_plans_idle_phases_are_the_routes_that_strike_nothing() -> None:
    # `bascule plan`'s idle-phase finding (pure core) and the fault plane's plain path (the local
    # target) decide "strikes nothing" each on its own side of the boundary: they must agree.
    from bascule import faults
    from bascule.plan.findings import idle_reason
    from bascule.targets.local.effects import _hop_state

    given = [
        faults.Latency(fixed=0.0),
        faults.Latency(fixed=0.0, jitter=0.01),
        faults.Ttft(delay=0.5),  # a ttft of 0 s is refused as given
        faults.HttpError(ratio=0.0),
        faults.HttpError(every=3),
        faults.Throttle(ratio=0.0),
        faults.Throttle(ratio=0.2),
        faults.Degrade(ratio=0.0),
        faults.Degrade(ratio=0.3),
        faults.PartialIndex(ratio=0.0),
        faults.PartialIndex(ratio=0.5),
        faults.ModelSwap(to="small", ratio=0.0),  # relabels every answer still
        faults.TokenRate(tokens_per_minute=10**9),
    ]
    for fault in given:
        assert (idle_reason(fault) is not None) == fs.strikes_nothing(_hop_state(fault)), fault  # type: ignore[arg-type]
