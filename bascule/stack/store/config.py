"""A store replica's configuration: flags with ``BASCULE_STORE_*`` fallbacks, `StoreConfig`."""

from __future__ import annotations

import enum
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from bascule.stack.corpus import DataClass
from bascule.stack.serve import FlagParser, base_url, non_negative_float, positive_float, positive_int

__all__ = [
    "BATCH_MAX_ENTRIES",
    "COMPONENT",
    "ENV_PREFIX",
    "ReplicationMode",
    "StoreConfig",
    "parse_args",
]

COMPONENT = "store"
ENV_PREFIX = "BASCULE_STORE_"
BATCH_MAX_ENTRIES = 256
"""Entries shipped to a peer in one ``/v1/replicate`` request, at most."""


class ReplicationMode(enum.StrEnum):
    """How writes reach peer stores."""

    ASYNC = "async"
    SYNC = "sync"
    NONE = "none"


@dataclass(frozen=True)
class StoreConfig:
    """How one store replica is served, what it may hold and how it replicates."""

    host: str = "127.0.0.1"
    port: int = 8000
    region: str = "local"
    name: str = "store"
    """Replica name; ``region/name`` must be unique among peers (it is the origin of writes)."""
    peers: tuple[str, ...] = ()
    """Base URLs of the peer stores writes are shipped to."""
    replication: ReplicationMode = ReplicationMode.ASYNC
    replication_lag: float = 0.0
    """Async mode: seconds a write waits before it is shipped."""
    sync_timeout: float = 2.0
    """Sync mode: seconds a write waits for reachable peers before a 503."""
    peer_timeout: float = 5.0
    """Seconds one request to a peer may take before the attempt counts as failed."""
    seed_corpus: bool = False
    max_class: DataClass = DataClass.CONFIDENTIAL
    log_max_entries: int = 10_000
    log_max_bytes: int = 64 * 1024 * 1024

    @property
    def origin(self) -> str:
        """This replica's name as the origin of the writes it accepts."""
        return f"{self.region}/{self.name}"


def parse_args(argv: Sequence[str], environ: Mapping[str, str] | None = None) -> StoreConfig:
    """The configuration from command-line flags, falling back to ``BASCULE_STORE_*`` variables.

    Invalid values exit with argparse's usage message (status 2), as any CLI does.
    """
    defaults = StoreConfig()
    flags = FlagParser(
        prog="python -m bascule.stack.store",
        description="Reference store service: documents, search index and replication.",
        env_prefix=ENV_PREFIX,
        environ=environ,
    )
    flags.listen(defaults.host, defaults.port)
    flags.replica(defaults.region, defaults.name)
    flags.repeated("--peer", base_url, "base URL of a peer store to replicate to")
    flags.choice(
        "--replication",
        [mode.value for mode in ReplicationMode],
        defaults.replication.value,
        "replication mode",
    )
    flags.option(
        "--replication-lag",
        non_negative_float,
        defaults.replication_lag,
        "async mode: seconds before a write is shipped",
    )
    flags.option(
        "--sync-timeout",
        positive_float,
        defaults.sync_timeout,
        "sync mode: seconds to wait for peers before answering 503",
    )
    flags.option("--peer-timeout", positive_float, defaults.peer_timeout, "seconds per request to a peer")
    flags.switch("--seed-corpus", "load the packaged knowledge base at start")
    flags.choice(
        "--max-class",
        [data_class.value for data_class in DataClass],
        defaults.max_class.value,
        "most sensitive data class this region may hold",
    )
    flags.option(
        "--log-max-entries",
        positive_int,
        defaults.log_max_entries,
        "replication log bound in entries",
    )
    flags.option("--log-max-bytes", positive_int, defaults.log_max_bytes, "replication log bound in bytes")
    args = flags.parse(argv)
    return StoreConfig(
        host=args.host,
        port=args.port,
        region=args.region,
        name=args.name,
        peers=tuple(dict.fromkeys(args.peer)),
        replication=ReplicationMode(args.replication),
        replication_lag=args.replication_lag,
        sync_timeout=args.sync_timeout,
        peer_timeout=args.peer_timeout,
        seed_corpus=args.seed_corpus,
        max_class=DataClass(args.max_class),
        log_max_entries=args.log_max_entries,
        log_max_bytes=args.log_max_bytes,
    )
