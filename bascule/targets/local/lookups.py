"""The stack's DNS server as a witness of discovered dependencies: the consumer of its lookup hook.

Every name the stack's own processes look up through bascule's DNS server is reported to a hook
(``DnsServer.on_lookup``); `OutsideLookups` keeps those of names the design does not declare —
anything outside the stack's zone; loopback names, single labels and reverse lookups left out —
aggregated per name and asker between two `take` calls, as `OutsideReach` records of kind ``dns``.
A lookup carries no trace context: it tells that the stack depends on the name, never which
request's data went there, so the runner counts it as an unattributed reach.

The hook is called on the DNS server's thread; `__call__` and `take` are thread-safe.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Final, Protocol

from bascule.journal.discovered import OutsideReach, ReachVia
from bascule.model.names import ZONE

__all__ = ["LookupLike", "OutsideLookups", "outside_name"]

_LOCAL: Final = frozenset({"localhost", "localhost.localdomain", "ip6-localhost", "ip6-loopback"})
_REVERSE: Final = ("in-addr.arpa", "ip6.arpa")


class LookupLike(Protocol):
    """One lookup the DNS server answered, as its hook reports it."""

    @property
    def t(self) -> float:
        """``time.monotonic()`` of the lookup."""
        ...

    @property
    def name(self) -> str: ...

    @property
    def qtype(self) -> str: ...

    @property
    def asker(self) -> str | None:
        """Who asked, as far as the server can tell (a replica name, an address)."""
        ...

    @property
    def outcome(self) -> str:
        """What the server answered (`dns.Lookup.outcome`: ``answered``, ``nodata``, ``nxdomain``,
        ``refused``…)."""
        ...


def outside_name(name: str, inside: Iterable[str] = ()) -> str | None:
    """`name` normalised when it is outside the design (not the zone, not loopback, not a reverse
    lookup, not one of `inside`), else None. A single label (``myhost``: the machine's own name, as
    a server asks it when it binds) is no host anyone reaches on the internet, and is left out too:
    a resolver that completes it with a search domain asks the completed name, which is seen."""
    host = name.strip().rstrip(".").lower()
    if not host or "." not in host or host in _LOCAL or host in set(inside):
        return None
    if host == ZONE or host.endswith("." + ZONE):
        return None
    if any(host == r or host.endswith("." + r) for r in _REVERSE):
        return None
    return host


@dataclass
class _Seen:
    first: float
    count: int = 0
    outcomes: dict[str, int] = field(default_factory=dict)


class OutsideLookups:
    """Lookups of names outside the design, aggregated per (name, asker) until taken."""

    def __init__(self, inside: Iterable[str] = (), regions: Mapping[str, str] | None = None) -> None:
        self._inside = frozenset(h.lower() for h in inside)
        self._regions = dict(regions or {})
        """Asker (a replica name) → its region."""
        self._lock = threading.Lock()
        self._seen: dict[tuple[str, str | None], _Seen] = {}

    def __call__(self, lookup: LookupLike) -> None:
        host = outside_name(lookup.name, self._inside)
        if host is None:
            return
        key = (host, lookup.asker)
        with self._lock:
            seen = self._seen.get(key)
            if seen is None:
                seen = self._seen[key] = _Seen(lookup.t)
            seen.first = min(seen.first, lookup.t)
            seen.count += 1
            seen.outcomes[lookup.outcome] = seen.outcomes.get(lookup.outcome, 0) + 1

    def chained(self, then: Callable[[LookupLike], None] | None) -> Callable[[LookupLike], None]:
        """This consumer, then `then` (when given), as one hook for the DNS server."""
        if then is None:
            return self

        def both(lookup: LookupLike) -> None:
            self(lookup)
            then(lookup)

        return both

    def take(self) -> list[OutsideReach]:
        """One record per (name, asker) looked up since the last call, oldest first."""
        with self._lock:
            seen, self._seen = self._seen, {}
        out = [
            OutsideReach(
                host,
                ReachVia.DNS,
                s.first,
                asker=asker,
                region=None if asker is None else self._regions.get(asker),
                outcome=max(s.outcomes, key=lambda o: s.outcomes[o]),
                count=s.count,
            )
            for (host, asker), s in seen.items()
        ]
        return sorted(out, key=lambda r: r.started)
