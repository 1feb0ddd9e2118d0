"""Where a Prometheus finds the reference stack's ``/metrics``: ``prometheus-targets.json`` in the
run directory, in the format of Prometheus's ``file_sd_configs`` (docs/metrics.md).

Replicas bind port 0 and a restarted one comes back on a new port, so the file is rewritten
(atomically) whenever a replica starts, stops or is killed; Prometheus notices the change by
itself. It lists the reference services that serve ``/metrics`` and are up — running, or paused by
a ``hang`` fault, whose scrapes then time out (``up == 0``) as a hung process's would.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Iterable
from pathlib import Path
from typing import Final
from urllib.parse import urlsplit

from bascule.stack.layout import ProcessKind, ReplicaSpec
from bascule.stack.supervisor import ProcessState, Replica

__all__ = ["SCRAPE_TARGETS_FILE", "ScrapeTargets", "scrape_groups"]

SCRAPE_TARGETS_FILE: Final = "prometheus-targets.json"
_SERVING: Final = frozenset({ProcessKind.GATEWAY, ProcessKind.RETRIEVER, ProcessKind.STORE, ProcessKind.LLM})
_UP: Final = frozenset({ProcessState.RUNNING, ProcessState.PAUSED})


def scrape_groups(replicas: Iterable[tuple[ReplicaSpec, Replica]]) -> list[dict[str, object]]:
    """One ``file_sd`` target group per component and region, ``host:port`` of each replica up.

    Its labels are ``bascule_component`` and ``bascule_region``: the series themselves carry
    ``component``, ``region`` and ``replica``, and a target label of the same name would rename
    them (``exported_component``)."""
    groups: dict[tuple[str, str], list[str]] = {}
    for spec, replica in replicas:
        if spec.kind not in _SERVING or replica.state not in _UP or replica.url is None:
            continue
        address = urlsplit(replica.url).netloc
        groups.setdefault((spec.component, spec.region), []).append(address)
    return [
        {"targets": sorted(targets), "labels": {"bascule_component": component, "bascule_region": region}}
        for (component, region), targets in sorted(groups.items())
    ]


class ScrapeTargets:
    """Keeps ``prometheus-targets.json`` in `run_dir` current."""

    def __init__(self, run_dir: Path) -> None:
        self.path = run_dir / SCRAPE_TARGETS_FILE
        self._lock = threading.Lock()

    def write(self, replicas: Iterable[tuple[ReplicaSpec, Replica]]) -> None:
        text = json.dumps(scrape_groups(replicas), indent=2)
        with self._lock:
            temporary = self.path.with_name(f".{self.path.name}.{os.getpid()}")
            temporary.write_text(text + "\n", encoding="utf-8")
            # Prometheus must never read half a file.
            os.replace(temporary, self.path)
