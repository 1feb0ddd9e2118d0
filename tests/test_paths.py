"""Paths: hops the fault plane observed tied to the samples of the requests that caused them."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from bascule.journal import HopSource, PathHop, RequestSample
from bascule.journal.samples import Hop
from bascule.model.loading import read_design
from bascule.runner.paths import PathJoiner

ROOT = Path(__file__).resolve().parent.parent
DESIGN = read_design(ROOT / "designs" / "us-fallback.yaml")
US, PAR = "aws/us-east-1", "scaleway/fr-par"


def hop(
    trace: str | None,
    started: float,
    component: str,
    region: str,
    *,
    status: int | None = 200,
    relayed: bool = True,
    caller: str | None = "gateway",
) -> PathHop:
    route = f"{caller or 'clients'}->{component}@{region}"
    return PathHop(
        trace, started, 0.01, status, relayed, route, caller, PAR if caller else None, component, region
    )


def sample(trace: str | None, hops: tuple[Hop, ...] = ()) -> RequestSample:
    return RequestSample("load", "ask", 0.0, 0.1, True, data_class="confidential", hops=hops, trace_id=trace)


def test_a_sample_gets_the_hops_of_its_trace_in_order_with_the_design_facts() -> None:
    paths = PathJoiner(DESIGN)
    paths.observe(
        [
            hop("t1", 2.0, "llm", PAR),
            hop("t1", 1.0, "gateway", PAR, caller=None),
            hop("t1", 1.5, "llm", US, status=429, relayed=False),
            hop("t2", 1.0, "gateway", US, caller=None),
        ]
    )
    got = paths.attach(sample("t1"))
    assert [(h.component, h.region, h.status, h.relayed) for h in got.hops] == [
        ("gateway", PAR, 200, True),
        ("llm", US, 429, False),
        ("llm", PAR, 200, True),
    ]
    assert all(h.via == HopSource.FAULT_PLANE for h in got.hops)
    assert got.hops[1].jurisdiction == "US" and got.hops[1].sovereignty == "foreign"
    assert got.hops[0].sovereignty == "sovereign"
    assert paths.attach(sample("t1")).hops == ()  # claimed once
    assert paths.attach(sample(None)).hops == ()
    report = paths.report()
    assert (report.hops, report.claimed) == (4, 3)
    assert report.relayed == {
        "clients->gateway@scaleway/fr-par": {"confidential": 1},
        "gateway->llm@scaleway/fr-par": {"confidential": 1},
    }
    assert report.unclaimed == {} and report.unanswered == 1  # t2 entered: a request of bascule's
    assert report.incomplete_routes == []


def test_a_hop_the_service_reported_itself_is_not_added_twice() -> None:
    paths = PathJoiner(DESIGN)
    paths.observe([hop("t", 1.0, "gateway", PAR, caller=None), hop("t", 1.1, "llm", US)])
    own = (Hop("gateway", PAR, sovereignty="sovereign"),)
    got = paths.attach(sample("t", own))
    assert [(h.component, h.region, h.via) for h in got.hops] == [
        ("gateway", PAR, HopSource.SERVED_BY),
        ("llm", US, HopSource.FAULT_PLANE),
    ]


def test_untraced_and_unclaimed_hops_between_components_make_paths_incomplete() -> None:
    paths = PathJoiner(DESIGN, keep=10.0)
    paths.observe(
        [
            hop(None, 1.0, "llm", US),  # a service that does not propagate trace context
            hop(None, 1.0, "gateway", PAR, caller=None),  # a client other than bascule's
            hop("own-trace", 1.0, "llm", PAR),  # a service that starts its own trace
            hop("late", 50.0, "llm", PAR),
        ]
    )
    paths.expire(now=20.0)
    report = paths.report()
    assert report.untraced == {"gateway->llm@aws/us-east-1": 1, "clients->gateway@scaleway/fr-par": 1}
    assert report.unclaimed == {"gateway->llm@scaleway/fr-par": 2}  # expired, and still pending
    assert report.incomplete_routes == ["gateway->llm@aws/us-east-1", "gateway->llm@scaleway/fr-par"]
    assert report.opaque_calls == frozenset()  # HTTP calls: the service's own report is trusted


def test_connections_that_were_not_http_make_their_route_incomplete() -> None:
    """A cache's or a database's own protocol carries requests the fault plane cannot tell apart:
    its connections are counted apart (not as hops), and their route is one where a request's path
    could not be told — its requests' data may have gone to the callee's region unseen."""
    paths = PathJoiner(DESIGN)
    opaque = replace(hop(None, 1.0, "store", US), opaque=True)
    paths.observe([opaque, replace(opaque, started=2.0), hop("t1", 1.0, "llm", PAR)])
    paths.attach(sample("t1"))
    report = paths.report()
    assert report.opaque == {"gateway->store@aws/us-east-1": 2}
    assert (report.hops, report.claimed, report.untraced, report.unclaimed) == (1, 1, {}, {})
    assert report.incomplete_routes == ["gateway->store@aws/us-east-1"]
    assert report.opaque_calls == {("gateway", PAR, "store")}  # who called whom there, for the judge


def test_bascules_own_requests_claim_their_hops_before_or_after_they_come() -> None:
    paths = PathJoiner(DESIGN)
    paths.observe([hop("early", 1.0, "store", PAR)])
    paths.bookkeeping("early")
    paths.bookkeeping("late")
    paths.observe([hop("late", 2.0, "store", PAR), hop("late", 2.1, "gateway", PAR, caller=None)])
    report = paths.report()
    assert (report.hops, report.claimed, report.unclaimed, report.unanswered) == (3, 3, {}, 0)


def test_hops_before_the_first_request_are_the_stack_starting_not_lost_paths() -> None:
    paths = PathJoiner(DESIGN, since=10.0)
    paths.observe([hop(None, 9.0, "llm", US), hop(None, 11.0, "llm", US)])
    report = paths.report()
    assert report.hops == 1 and report.untraced == {"gateway->llm@aws/us-east-1": 1}
