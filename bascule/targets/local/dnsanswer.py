"""What the local target's DNS server answers to one query packet: pure, from the zone's records
and faults (`DnsTable`). The server (`bascule.targets.local.dns`) reads packets and sends these
answers; see its docstring for the zone's rules.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import Enum
from typing import Final

from dnslib import AAAA, QTYPE, RCODE, RR, SOA, A, DNSError, DNSRecord

from bascule.targets.local.faultstate import DnsFaultMode

__all__ = ["UDP_MAX", "DnsTable", "Outcome", "answer", "answer_query", "qualify", "udp_limit"]

UDP_MAX: Final = 512


class Outcome(Enum):
    """What the server did with one query."""

    ANSWERED = "answered"
    NODATA = "nodata"
    NXDOMAIN = "nxdomain"
    SERVFAIL = "servfail"
    REFUSED = "refused"
    DROPPED = "dropped"
    MALFORMED = "malformed"


@dataclass(frozen=True, slots=True)
class DnsTable:
    """Everything a query's answer depends on: the zone, its records and its faults."""

    zone: str
    records: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    faults: Mapping[str, DnsFaultMode] = field(default_factory=dict)
    ttl: int = 0


def qualify(name: str, zone: str) -> str:
    """The absolute, lower-case form of `name` in `zone`.

    `gateway.eu` and `gateway.eu.bascule.internal` both give `gateway.eu.bascule.internal.`;
    `*` stands for every name of the zone (`*.bascule.internal.`). An absolute name outside the
    zone is a `ValueError`.
    """
    zone = zone.lower().rstrip(".") + "."
    name = name.strip().lower()
    if not name or name == ".":
        raise ValueError("empty DNS name")
    if name.endswith("."):
        absolute = name
    elif (name + ".").endswith("." + zone) or name + "." == zone:
        absolute = name + "."
    else:
        absolute = f"{name}.{zone}"
    if absolute != zone and not absolute.endswith("." + zone):
        raise ValueError(f"{name!r} is not in zone {zone!r}")
    labels = absolute[:-1].split(".")
    if any(not label or len(label) > 63 for label in labels) or len(absolute) > 254:
        raise ValueError(f"invalid DNS name {name!r}")
    if "*" in absolute and not (absolute.startswith("*.") and "*" not in absolute[1:]):
        raise ValueError(f"a wildcard may only be a leading '*.' label, got {name!r}")
    return absolute


def _find_fault(name: str, table: DnsTable) -> DnsFaultMode | None:
    """The fault for `name`: its own, else the closest enclosing wildcard's."""
    faults = table.faults
    if not faults:
        return None
    mode = faults.get(name)
    if mode is not None:
        return mode
    rest = name
    while rest != table.zone:
        rest = rest.split(".", 1)[1]
        mode = faults.get("*." + rest)
        if mode is not None:
            return mode
    return None


def _soa(table: DnsTable) -> RR:
    return RR(
        table.zone,
        QTYPE.SOA,
        rdata=SOA(f"ns.{table.zone}", f"hostmaster.{table.zone}", (1, 60, 60, 600, table.ttl)),
        ttl=table.ttl,
    )


def answer_query(packet: bytes, table: DnsTable) -> tuple[bytes | None, Outcome, str | None]:
    """The response to a query packet (None: send nothing), what happened, and the name asked."""
    response, outcome, name, _ = answer(packet, table)
    return response, outcome, name


def answer(packet: bytes, table: DnsTable) -> tuple[bytes | None, Outcome, str | None, str]:
    """`answer_query`, with the type asked (``A``…; empty for a malformed packet)."""
    try:
        request = DNSRecord.parse(packet)
    except (DNSError, ValueError, IndexError):
        return None, Outcome.MALFORMED, None, ""
    if request.header.qr or request.header.opcode != 0 or not request.questions:
        return None, Outcome.MALFORMED, None, ""
    question = request.questions[0]
    response, outcome, name = _respond(request, table)
    return response, outcome, name, str(QTYPE.get(question.qtype, str(question.qtype)))


def _respond(request: DNSRecord, table: DnsTable) -> tuple[bytes | None, Outcome, str]:
    question = request.questions[0]
    name = str(question.qname).lower()
    qtype = question.qtype
    reply = request.reply(ra=0, aa=1)
    if name != table.zone and not name.endswith("." + table.zone):
        reply.header.aa = 0
        reply.header.rcode = RCODE.REFUSED
        return bytes(reply.pack()), Outcome.REFUSED, name
    fault = _find_fault(name, table)
    if fault is DnsFaultMode.DROP:
        return None, Outcome.DROPPED, name
    if fault is DnsFaultMode.SERVFAIL:
        reply.header.aa = 0
        reply.header.rcode = RCODE.SERVFAIL
        return bytes(reply.pack()), Outcome.SERVFAIL, name
    if fault is DnsFaultMode.NXDOMAIN:
        reply.header.rcode = RCODE.NXDOMAIN
        reply.add_auth(_soa(table))
        return bytes(reply.pack()), Outcome.NXDOMAIN, name
    if fault is DnsFaultMode.NODATA:
        reply.add_auth(_soa(table))
        return bytes(reply.pack()), Outcome.NODATA, name
    addresses = table.records.get(name)
    if addresses is None:
        if name == table.zone and qtype in (QTYPE.SOA, QTYPE.ANY):
            reply.add_answer(_soa(table))
            return bytes(reply.pack()), Outcome.ANSWERED, name
        # An empty non-terminal (a name with records below it) exists, without data.
        below = "." + name
        if name != table.zone and not any(n.endswith(below) for n in table.records):
            reply.header.rcode = RCODE.NXDOMAIN
            reply.add_auth(_soa(table))
            return bytes(reply.pack()), Outcome.NXDOMAIN, name
        reply.add_auth(_soa(table))
        return bytes(reply.pack()), Outcome.NODATA, name
    for address in addresses:
        if ":" in address and qtype in (QTYPE.AAAA, QTYPE.ANY):
            reply.add_answer(RR(name, QTYPE.AAAA, rdata=AAAA(address), ttl=table.ttl))
        elif ":" not in address and qtype in (QTYPE.A, QTYPE.ANY):
            reply.add_answer(RR(name, QTYPE.A, rdata=A(address), ttl=table.ttl))
    if not reply.rr:
        reply.add_auth(_soa(table))
        return bytes(reply.pack()), Outcome.NODATA, name
    return bytes(reply.pack()), Outcome.ANSWERED, name


def udp_limit(packet: bytes) -> int:
    """The response size the client accepts over UDP: 512, or its EDNS payload size."""
    try:
        request = DNSRecord.parse(packet)
    except (DNSError, ValueError, IndexError):
        return UDP_MAX
    for rr in request.ar:
        if rr.rtype == QTYPE.OPT:
            return max(UDP_MAX, int(rr.rclass))
    return UDP_MAX
