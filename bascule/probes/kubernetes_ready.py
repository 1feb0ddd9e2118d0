"""The ``kubernetes-ready`` probe: enough ready replicas of each workload, in each region, on the
Kubernetes clusters a target file maps the design onto.

Each check lists pods (and nodes, where regions share a cluster) through the official client,
read-only (`bascule.targets.kubernetes.probe.read_readiness`), in a thread so that the probes'
event loop is never blocked; it holds when every selected workload has at least ``min_ready`` of
the replicas the design places in the region ready. The clients are made at the first check, from
the target file's listed contexts only, and closed with the probe.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Mapping
from typing import Any

import httpx

from bascule.errors import BasculeError, ProbeError
from bascule.journal.samples import RequestSample
from bascule.model import probes as specs
from bascule.probes.base import Probe, ProbeContext, describe_error, register

__all__ = ["KubernetesReadyProbe", "shortfalls"]


def shortfalls(readiness: Any, spec: specs.KubernetesReadyProbe) -> list[str]:
    """``gateway in aws/us-east-1: 1 of 2 ready`` for each selected workload below the spec's
    fraction; `readiness` is `read_readiness`'s tuple. Pure."""
    out: list[str] = []
    for entry in readiness:
        if spec.components and entry.component not in spec.components:
            continue
        if spec.regions and entry.region not in spec.regions:
            continue
        needed = math.ceil(spec.min_ready * entry.expected - 1e-9)
        if entry.ready < needed:
            out.append(f"{entry.component} in {entry.region}: {entry.ready} of {entry.expected} ready")
    return out


@register
class KubernetesReadyProbe(Probe[specs.KubernetesReadyProbe]):
    kind = "kubernetes-ready"
    spec_type = specs.KubernetesReadyProbe
    sample_kind = "kubernetes-ready"

    def __init__(
        self, spec: specs.KubernetesReadyProbe, context: ProbeContext, name: str | None = None
    ) -> None:
        super().__init__(spec, context, name)
        self._mapping: Any = None
        self._apis: Mapping[str, Any] | None = None

    def _connect(self) -> None:
        # Imported here: the official client takes about a second to import.
        from bascule.targets.kubernetes.cluster import connect
        from bascule.targets.kubernetes.mapping import bind, read_target

        design = self.context.design
        try:
            self._mapping = bind(read_target(self.spec.target_file, design), design)
        except BasculeError as exc:
            raise ProbeError(f"{self.name}: {exc}") from exc
        self._apis = connect(self._mapping.target, self.spec.kubeconfig)

    def _check(self) -> list[str]:
        from bascule.targets.kubernetes.probe import read_readiness

        if self._apis is None:
            self._connect()
        assert self._apis is not None
        return shortfalls(read_readiness(self._mapping, self._apis), self.spec)

    async def sample(self, client: httpx.AsyncClient, now: float) -> RequestSample:
        try:
            problems = await asyncio.to_thread(self._check)
            error = "; ".join(problems) or None
        except (BasculeError, OSError) as exc:
            error = describe_error(exc)
        return self.verdict(now, error)

    async def finish(self, client: httpx.AsyncClient, context: ProbeContext) -> object | None:
        for api in (self._apis or {}).values():
            api.close()
        self._apis = None
        return None
