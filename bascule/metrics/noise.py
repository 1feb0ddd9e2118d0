"""The steady state's noise, and the threshold it sets: a machine that fails a request now and then
before any fault must not read as an outage after one. Pure.

The noise is measured over the windows that ended before the first fault: the failure rate, the
spread of the windows' success ratios and of their p95 latency. A window after the fault is
*beyond noise* when its failures are more than the steady state's failure rate explains — more than
a binomial draw at that rate gives with probability above `ALPHA`. A steady state without a failure
explains none: any failure is then beyond it, as before there was a noise model.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from functools import lru_cache

from bascule.metrics.model import Noise
from bascule.metrics.state import MergedWindow, rounded

__all__ = ["ALPHA", "explained_failures", "measure_noise"]

ALPHA = 0.001
"""The chance, per window, that steady-state noise alone is read as beyond it."""


def measure_noise(windows: Sequence[MergedWindow], *, alpha: float = ALPHA) -> Noise:
    """The noise of the steady-state `windows` (those that ended before the first fault)."""
    busy = [w for w in windows if w.requests]
    requests = sum(w.requests for w in busy)
    ok = sum(w.ok for w in busy)
    ratios = [w.ok / w.requests for w in busy]
    p95s = [q for w in busy if w.ok and (q := w.sketch.quantile(0.95)) is not None]
    return Noise(
        windows=len(busy),
        requests=requests,
        failed=requests - ok,
        failure_ratio=rounded((requests - ok) / requests) if requests else None,
        success_ratio_stdev=rounded(statistics.stdev(ratios)) if len(ratios) >= 2 else None,
        latency_p95_mean=rounded(statistics.fmean(p95s)) if p95s else None,
        latency_p95_stdev=rounded(statistics.stdev(p95s)) if len(p95s) >= 2 else None,
        alpha=alpha,
    )


@lru_cache(maxsize=4096)
def explained_failures(requests: int, failure_ratio: float, alpha: float = ALPHA) -> int:
    """The most failures among `requests` that noise at `failure_ratio` explains: the smallest c
    with P(X > c) ≤ `alpha` for X ~ Binomial(requests, failure_ratio). 0 without noise."""
    if failure_ratio <= 0.0 or requests <= 0:
        return 0
    if failure_ratio >= 1.0:
        return requests
    log_p, log_q = math.log(failure_ratio), math.log1p(-failure_ratio)
    below = 0.0
    for c in range(requests + 1):
        below += math.exp(
            math.lgamma(requests + 1)
            - math.lgamma(c + 1)
            - math.lgamma(requests - c + 1)
            + c * log_p
            + (requests - c) * log_q
        )
        if 1.0 - below <= alpha:
            return c
    return requests
