"""What nginx itself saw: the ground truth of a run of this example, from nginx's access log.

    python truth.py run/proxy-scaleway-fr-par-0 [--journal RUN_DIR/journal.jsonl] [--json]

Reads the state directory nginx_proxy.py wrote (``access.log``, one JSON line per request, and
``upstreams.json``, which upstream address is which region) and prints, independently of
bascule's figures:

- how many requests of each data class reached each region — *reached*: nginx sent the request
  there, whatever came back (a 429 from a provider still means the provider received the
  prompt) — and how many each region served (answered 2xx);
- how many confidential requests reached, and were served by, the foreign primary;
- when the first request served by the fallback started — of a class the primary served before
  the faults, since confidential requests may go to the fallback all along — and, given bascule's
  journal, how long after the first fault (time to fail over), and how long after the last revert
  the first request was served by the primary again (failback);
- how many requests carried a W3C ``traceparent``.

Standard library only: it runs wherever the example does.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class Request:
    """One line of the access log: when the request started (epoch seconds), its data class, and
    the upstreams nginx tried, in order, with what each answered."""

    started: float
    status: int
    data_class: str
    traceparent: bool
    tried: tuple[tuple[str, str], ...]
    """``(address, upstream status)`` per attempt; status ``-`` when none came back."""


@dataclass(frozen=True)
class Faults:
    """From bascule's journal: the wall-clock (epoch) times faults went in and came out."""

    first_applied: float
    last_reverted: float | None


@dataclass
class Truth:
    requests: int = 0
    with_traceparent: int = 0
    reached: dict[str, dict[str, int]] = field(default_factory=dict)
    """region → data class → requests sent there (any answer)."""
    served: dict[str, dict[str, int]] = field(default_factory=dict)
    """region → data class → requests answered 2xx from there."""
    confidential_reached_foreign: int = 0
    confidential_served_foreign: int = 0
    first_fallback_served: float | None = None
    """Epoch start of the first request the fallback served of a class the primary served before
    the first fault, after that fault (any, without the journal)."""
    time_to_failover: float | None = None
    """First fault → start of the first request served by the fallback after it."""
    failback: float | None = None
    """Last revert → start of the first request served by the primary after it."""


def parse_line(line: str) -> Request:
    raw = json.loads(line)
    addresses = [a.strip() for a in raw["upstream_addr"].split(",") if a.strip()]
    statuses = [s.strip() for s in raw["upstream_status"].split(",")]
    statuses += ["-"] * (len(addresses) - len(statuses))
    return Request(
        started=float(raw["msec"]) - float(raw["request_time"]),
        status=int(raw["status"]),
        data_class=raw["data_class"] or "unknown",
        traceparent=bool(raw["traceparent"]),
        tried=tuple(zip(addresses, statuses, strict=False)),
    )


def read_faults(journal: Path) -> Faults | None:
    applied: list[float] = []
    reverted: list[float] = []
    for line in journal.read_text().splitlines():
        record = json.loads(line)
        if record.get("type") == "fault-applied":
            applied.append(datetime.fromisoformat(record["wall"]).timestamp())
        elif record.get("type") == "fault-reverted":
            reverted.append(datetime.fromisoformat(record["wall"]).timestamp())
    if not applied:
        return None
    return Faults(min(applied), max(reverted) if reverted else None)


def compute_truth(
    requests: Sequence[Request], upstreams: Mapping[str, Mapping[str, str]], faults: Faults | None
) -> Truth:
    """The figures above, from the parsed access log, ``upstreams.json`` and the fault times."""
    primary = next(a for a, u in upstreams.items() if u["role"] == "primary")
    fallback = next(a for a, u in upstreams.items() if u["role"] == "fallback")
    reached: dict[str, Counter[str]] = {}
    served: dict[str, Counter[str]] = {}
    # The classes the primary served before the first fault: those that can fail over.
    primary_classes = {
        r.data_class
        for r in requests
        if r.tried
        and r.tried[-1] == (primary, "200")
        and (faults is None or r.started < faults.first_applied)
    }
    truth = Truth()
    for r in sorted(requests, key=lambda r: r.started):
        truth.requests += 1
        truth.with_traceparent += r.traceparent
        for address in {a for a, _ in r.tried}:
            region = upstreams.get(address, {}).get("region", address)
            reached.setdefault(region, Counter())[r.data_class] += 1
        last_address, last_status = r.tried[-1] if r.tried else ("", "-")
        ok = last_status.startswith("2")
        if ok:
            region = upstreams.get(last_address, {}).get("region", last_address)
            served.setdefault(region, Counter())[r.data_class] += 1
        if r.data_class == "confidential" and any(a == primary for a, _ in r.tried):
            truth.confidential_reached_foreign += 1
            truth.confidential_served_foreign += ok and last_address == primary
        if not ok:
            continue
        after_fault = faults is None or r.started >= faults.first_applied
        if (
            last_address == fallback
            and r.data_class in primary_classes
            and after_fault
            and truth.first_fallback_served is None
        ):
            truth.first_fallback_served = r.started
            if faults is not None:
                truth.time_to_failover = r.started - faults.first_applied
        if (
            faults is not None
            and faults.last_reverted is not None
            and last_address == primary
            and truth.failback is None
            and r.started >= faults.last_reverted
        ):
            truth.failback = r.started - faults.last_reverted
    truth.reached = {region: dict(c) for region, c in reached.items()}
    truth.served = {region: dict(c) for region, c in served.items()}
    return truth


def render(truth: Truth, upstreams: Mapping[str, Mapping[str, str]]) -> str:
    foreign = next(u["region"] for u in upstreams.values() if u["role"] == "primary")
    lines = [
        f"requests in nginx's access log: {truth.requests} ({truth.with_traceparent} with a traceparent)"
    ]
    for title, table in (("reached", truth.reached), ("served (2xx)", truth.served)):
        for region, classes in sorted(table.items()):
            counts = ", ".join(f"{c} {n}" for c, n in sorted(classes.items()))
            lines.append(f"{title} {region}: {counts}")
    lines.append(
        f"confidential requests that reached {foreign}: {truth.confidential_reached_foreign}"
        f" (served there: {truth.confidential_served_foreign})"
    )
    if truth.first_fallback_served is not None:
        started = datetime.fromtimestamp(truth.first_fallback_served).astimezone()
        when = started.isoformat(timespec="milliseconds")
        lines.append(f"first request served by the fallback started at {when}")
    for name, value in (("time to fail over", truth.time_to_failover), ("failback", truth.failback)):
        lines.append(f"{name}: {'—' if value is None else f'{value:.3f} s'}")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description="nginx's own view of a run of this example")
    parser.add_argument("state", type=Path, help="the proxy's state directory (run/REPLICA)")
    parser.add_argument("--journal", type=Path, help="bascule's journal.jsonl: times from the first fault")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = parser.parse_args()
    upstreams: dict[str, dict[str, str]] = json.loads((args.state / "upstreams.json").read_text())
    requests = [parse_line(line) for line in (args.state / "access.log").read_text().splitlines() if line]
    faults = read_faults(args.journal) if args.journal else None
    truth = compute_truth(requests, upstreams, faults)
    if args.json:
        data: dict[str, Any] = asdict(truth)
        print(json.dumps(data, indent=2))
    else:
        print(render(truth, upstreams))
    return 0


if __name__ == "__main__":
    sys.exit(main())
