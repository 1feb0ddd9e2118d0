"""The reference stack's gateway: the entry point that routes each request across regions.

- ``POST /v1/ask {question, data_class, tenant?}`` retrieves passages from a retriever, asks an
  llm over them (``POST /v1/chat/completions`` with `bascule.stack.prompt.build_messages`) and
  answers ``{answer, citations, degraded, served_by, latency_ms, data_class}``. When no llm the
  data class may use answers, the answer is the top passages' first sentences, cited, with
  ``degraded: true`` and a ``degraded_reason``.
- ``POST /v1/documents {id?, title?, text, data_class}`` writes through to the first allowed
  healthy store and returns the store's acknowledgement with ``served_by``.
- ``GET /v1/status``: breaker states per upstream, the preferred region per data class, region
  health and retry-budget usage, for the live view. A breaker's ``healthy_for`` is null unless
  it is closed after a trip.
- ``GET /healthz`` (the process answers) and ``GET /readyz`` (its client is up).

Routing follows the design (`bascule.stack.routing`): the sovereignty guard keeps a data class
away from regions below its minimum level and, when no allowed region can serve, the gateway
fails closed with ``403 {"error": "sovereignty", "message": "no region allowed for '…' is
available…"}`` rather than use a refused region. Each upstream ``(component, region)`` has a
circuit breaker (`bascule.stack.breaker`); half-open breakers are probed in the background
(``GET /readyz``, ``GET /v1/models`` for llms), so that a user request is a trial call only as
a last resort. Failed calls are retried with tenacity — each retry on the next
region of the route, after a jittered exponential back-off, only while the retry budget allows
— within the design's connect and request timeouts; with ``routing.hedging`` an idempotent call
still unanswered after ``hedging.after`` is also sent to the next region, the first success
wins, and the hedge is paid from the retry budget. Writes are retried only when the store
certainly did not process them (connection not established, 429, 503), and never hedged.

``served_by`` lists every hop as ``{component, region, provider, jurisdiction, sovereignty}``
(plus ``replica`` or ``model`` when known): the gateway, the hops the retriever reports (itself
and the store it read), then the llm. A region the design does not know, or a hop that does not
name its region (recorded as ``unknown``), counts at the ``foreign`` level, the least sovereign,
so that an unidentified hop is never mistaken for a safe one.

Other errors are ``{"error", "message"}`` bodies: 400 ``unknown-data-class``, 413
``too-large``, 422 ``invalid-request``, 503 ``unavailable`` (nothing served and no region was
refused) or ``credentials`` (the headers provider failed), and an upstream's own 4xx passed
through as ``rejected``.

The package, by concern: `config` (flags and `GatewayConfig`), `wire` (bodies, errors and
``served_by`` hops), `upstream` (one call's failures, the retry budget's stop, the route cursor),
`core` (the `Gateway`: routing, retries, hedging, probes, status) and `app` (the HTTP side and
`main`).

Run it with ``python -m bascule.stack.gateway --design D.yaml --region R --retriever R=URL
--llm R=URL --store R=URL``; flags fall back to ``BASCULE_GATEWAY_*`` variables, and once it
accepts connections it prints ``listening on http://HOST:PORT``.
"""

from bascule.stack.gateway.app import create_app, main
from bascule.stack.gateway.config import DEFAULT_MODEL, ENV_PREFIX, GatewayConfig, parse_args
from bascule.stack.gateway.core import RETRY_BUDGET_WINDOW, ClientFactory, HeadersProvider
from bascule.stack.gateway.wire import retrieval_only_answer

__all__ = [
    "DEFAULT_MODEL",
    "ENV_PREFIX",
    "RETRY_BUDGET_WINDOW",
    "ClientFactory",
    "GatewayConfig",
    "HeadersProvider",
    "create_app",
    "main",
    "parse_args",
    "retrieval_only_answer",
]
