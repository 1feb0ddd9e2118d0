"""The reference stack's store service: one region's documents, their index and replication.

API (every response carries ``x-bascule-served-by: {"component": "store", "region", "replica"}``):

- ``POST /v1/documents {id?, title?, text, data_class, tags?}`` → ``{id, seq, acknowledged_at,
  replicated}``: an upsert (same id replaces); the id is generated when absent. A class above
  ``--max-class`` is refused with 403 and not stored.
- ``GET /v1/documents/{id}`` → the document, or 404.
- ``POST /v1/search {query | vector, k, max_class}`` → ``{results: [{id, title, text,
  data_class, score}], region}``: the top-k documents by cosine similarity among those not
  above ``max_class``; only positive scores are returned (a document sharing no word with the
  query is not a result). Ties break by id, so every replica ranks the same documents alike.
  Documents tagged ``synthetic`` (bascule's load writes and canaries) are stored, replicated and
  read back like any other, but never searched: test traffic must not change the answers that
  the golden set measures.
- ``POST /v1/replicate {origin, entries: [{seq, doc}]}``: peers' entries, applied idempotently.
- ``GET /v1/replication``: this replica's log position, each peer's progress and lag, the last
  sequence applied from each origin, and ``max_class`` (which peers read before shipping).
- ``POST /v1/admin/wipe`` (the ``data-loss`` fault) and ``GET /v1/admin/stats``.
- ``POST /v1/admin/index {frozen, catch_up?}`` (the ``stale-index`` fault) and ``GET
  /v1/admin/index``: while frozen, searches answer from a copy of the index taken when it froze —
  documents written since are not found, documents rewritten since are found and returned as they
  were — while writes are acknowledged, replicated and read back by id as usual. Unfreezing swaps
  the live index back in at once (it was kept up to date all along); with ``catch_up`` (documents
  a second), the copy takes in what it missed at that rate, oldest write first, while new writes
  join the queue, and is dropped once nothing is behind. The answer: ``{frozen, catching_up,
  frozen_at, behind, behind_seconds, region, replica}`` — ``behind`` counts the documents written
  since it froze and not yet taken in, ``behind_seconds`` the age of the oldest — and, on
  unfreezing, ``caught_up`` (taken in at once). The freeze lives in the process: a restarted
  replica comes back unfrozen.
- ``GET /healthz`` (the process answers) and ``GET /readyz`` (started, corpus seeded).

Documents are embedded with `bascule.stack.embedding` (title and text), rows of a float32
matrix that grows by doubling; a search is one matrix-vector product.

Replication. Each accepted write gets the next sequence number of this replica (its *origin*,
``region/name``) and is appended to a replication log that per-peer shipper tasks send, in
batches, to every ``--peer`` (a full mesh: entries are never forwarded). Conflicts resolve by
last writer wins on ``(written_at, origin, seq)``, so replicas converge whatever the arrival
order; a local write is stamped after the version it replaces, so it is always visible here.
- ``async``: the write is acknowledged at once; an entry is shipped ``--replication-lag``
  seconds after it was accepted. While a peer is unreachable its shipper retries with
  exponential back-off (0.05 s doubling to 1 s), so a partition makes ``pending`` and
  ``lag_seconds`` grow and the peer catches up once it answers again.
- ``sync``: the lag is ignored and a write is acknowledged once every reachable peer applied
  it. A peer counts as unreachable when an attempt that ended after the write was appended
  failed (refused, reset, timed out, non-2xx); so a dead peer does not block writes (they are
  acknowledged with ``replicated: false``), but a peer that accepts connections and does not
  answer (gray failure) does: after ``--sync-timeout`` the write gets 503 ``replication
  timeout``. That write is not acknowledged, yet it stays applied here and in the log and is
  still shipped, as a database whose commit outcome is unknown: the client must treat it as
  failed, and bascule's RPO counts only acknowledged writes.
- ``none``: nothing is shipped and no log is kept; entries from peers are still applied.

``replicated`` in a write's answer is true when every peer has applied the write (or may not
hold its class) and at least one peer holds a copy.

Data classes. ``--max-class`` is the most sensitive class this region may hold: writes,
replicated entries and seeded documents above it are refused and never stored. Shippers read
each peer's ``max_class`` from its ``/v1/replication`` before the first batch and after every
failure, and never send a peer an entry above it: such entries are counted as ``withheld``.

Bounds. The log keeps only entries some peer has not received, at most ``--log-max-entries``
entries and ``--log-max-bytes`` bytes of document content (default 10 000 and 64 MiB); past
either, the oldest entries are dropped and every peer that had not received them counts them
in ``dropped`` (they are lost for that peer: the RPO a too-long partition costs). A wipe drops
the log too, counted the same way. A batch holds at most 256 entries or 2 MiB; a document's
text at most 200 000 characters; request bodies at most 4 MiB (32 MiB for ``/v1/replicate``).

The sequence counter survives a wipe, so that peers' idempotence filters do not swallow the
writes that follow; a wiped replica is not refilled from its peers, only new writes reach it.

The package, by concern: `config` (flags and `StoreConfig`), `index` (documents and their
vectors), `log` (the replication log and what a replica knows of its peers), `replica` (one
replica's state, `Store`), `replicator` (shipping to peers), `wire` (request bodies) and `app`
(the HTTP side and `main`).

Run it with ``python -m bascule.stack.store --port 0 --region fr-par --peer URL``; once it
accepts connections it prints ``listening on http://HOST:PORT`` on stdout.
"""

from bascule.stack.store.app import create_app, main
from bascule.stack.store.config import COMPONENT, ENV_PREFIX, ReplicationMode, StoreConfig, parse_args
from bascule.stack.store.index import SYNTHETIC_TAG, DocumentIndex, StoredDocument
from bascule.stack.store.log import LogEntry, PeerState, ReplicationLog
from bascule.stack.store.replica import ClassNotAllowedError, ReplicationLoopError, Store

__all__ = [
    "COMPONENT",
    "ENV_PREFIX",
    "SYNTHETIC_TAG",
    "ClassNotAllowedError",
    "DocumentIndex",
    "LogEntry",
    "PeerState",
    "ReplicationLog",
    "ReplicationLoopError",
    "ReplicationMode",
    "Store",
    "StoreConfig",
    "StoredDocument",
    "create_app",
    "main",
    "parse_args",
]
