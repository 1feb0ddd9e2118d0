"""The faults on answers — ttft, stream-cut, token-rate, degrade, model-swap, partial-index,
embedding-mismatch, limit-data, slicer, slow-close —
refused on
Kubernetes, each with why: Chaos Mesh acts on packets (NetworkChaos) and on whole HTTP requests and
responses (HTTPChaos: abort, delay, replace, patch of every matching one), never inside an answer's
body nor with a count of what answers carry. The local target carries them out in its fault plane."""

from __future__ import annotations

from collections.abc import Callable

from bascule.faults import Fault
from bascule.plan.model import Touch
from bascule.targets.kubernetes.calls.builder import Builder
from bascule.targets.kubernetes.calls.model import RefusalRule

__all__ = [
    "degrade",
    "embedding_mismatch",
    "limit_data",
    "model_swap",
    "partial_index",
    "slicer",
    "slow_close",
    "stream_cut",
    "token_rate",
    "ttft",
]


def _refused(why: str) -> Callable[[Builder, Fault, Touch], None]:
    def refuse(b: Builder, fault: Fault, touch: Touch) -> None:
        raise b.refuse(RefusalRule.UNSUPPORTED, why)

    return refuse


ttft = _refused(
    "ttft holds an answer's first body bytes after its head has gone out: HTTPChaos 'delay' "
    "holds the whole response, head included, and NetworkChaos delays every packet; "
    "'latency' is the nearest fault Chaos Mesh carries out"
)
stream_cut = _refused(
    "stream-cut cuts an answer after some events or bytes: HTTPChaos replaces or patches whole "
    "bodies and NetworkChaos drops packets, not a stream's tail"
)
token_rate = _refused(
    "token-rate keeps a count of the tokens answers carry: HTTPChaos answers every matching "
    "request alike and counts nothing; 'throttle' (429 on every request) is the nearest fault "
    "Chaos Mesh carries out"
)
limit_data = _refused(
    "limit-data closes each connection after some bytes: NetworkChaos acts on packets with no "
    "count of a connection's bytes, and HTTPChaos on whole requests and responses"
)
degrade = _refused(
    "degrade rewrites the text of a share of answers: HTTPChaos can only replace every matching "
    "body by one fixed body, with no ratio and no reading of the answer"
)
slicer = _refused(
    "slicer cuts a connection's bytes into small delayed pieces: NetworkChaos delays, drops, "
    "duplicates or corrupts packets but never re-segments a stream, and HTTPChaos acts on whole "
    "responses; 'latency' or 'bandwidth' are the nearest faults Chaos Mesh carries out"
)
slow_close = _refused(
    "slow-close holds back a connection's close after its bytes: NetworkChaos cannot tell a FIN "
    "from the data before it, and HTTPChaos 'delay' holds the whole response"
)
model_swap = _refused(
    "model-swap relabels every answer's model and shortens or uncites a share of their texts: "
    "HTTPChaos's JSON merge patch could set a non-streamed answer's 'model' field, but not change "
    "each answer's own text, a ratio of them, nor the events of a stream"
)
partial_index = _refused(
    "partial-index removes a share of the documents from each search answer: HTTPChaos replaces "
    "or merge-patches whole bodies alike, and cannot drop some items of a list by their ids"
)
embedding_mismatch = _refused(
    "embedding-mismatch remaps the vectors inside each request and answer: HTTPChaos replaces or "
    "merge-patches whole bodies by one fixed value, and cannot compute a new vector from each one"
)
