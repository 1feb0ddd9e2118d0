"""OpenTelemetry traces as a source of paths: an OTLP/HTTP receiver a run starts (`receiver`), the
decoding of its request bodies (`decode`) and the attribution of each span to a region of the
design, or to a host the design does not declare (`attribute`). An edge: it opens a socket and runs
a thread; the pure core never imports it. See docs/traces.md.
"""

from bascule.traces.attribute import Attribution, Attributor, provider_id
from bascule.traces.decode import (
    Decoded,
    Encoding,
    TraceDecodeError,
    WireSpan,
    decode_request,
    parse_media_type,
)
from bascule.traces.receiver import TRACES_PATH, ReceiverCounts, TraceReceiver

__all__ = [
    "TRACES_PATH",
    "Attribution",
    "Attributor",
    "Decoded",
    "Encoding",
    "ReceiverCounts",
    "TraceDecodeError",
    "TraceReceiver",
    "WireSpan",
    "decode_request",
    "parse_media_type",
    "provider_id",
]
