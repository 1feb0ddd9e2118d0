"""An OTLP/HTTP trace receiver for the length of a run: services export their spans to it, and the
runner polls the spans, attributed to the design's regions.

``POST /v1/traces`` with an ``ExportTraceServiceRequest`` (protobuf or OTLP/JSON, gzip or not)
answers 200 with an ``ExportTraceServiceResponse`` in the request's encoding — its partial success
counting the spans that were refused (bad ids) or dropped (queue full). Another content type or
content encoding: 415; a body that cannot be decoded: 400; a body over ``max_body`` (or inflating
beyond 16 times it): 413; no ``Content-Length``: 411; another path: 404. Error bodies are a
``google.rpc.Status``, as the specification asks.

The server listens on 127.0.0.1 and accepts in a thread of its own (each open connection is served
by one more, ended by ``stop()``). Spans wait in a bounded queue until ``poll()``; when it is full
they are dropped and counted, so that a sender is never held up by a slow reader.
"""

from __future__ import annotations

import contextlib
import json
import queue
import socket
import threading
import time
from dataclasses import dataclass, replace
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from urllib.parse import urlsplit

from google.protobuf import json_format
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceResponse

from bascule.errors import TargetError
from bascule.journal.spans import SpanRecord
from bascule.model.design import Design
from bascule.traces.attribute import Attributor
from bascule.traces.decode import (
    BodyTooLargeError,
    Encoding,
    TraceDecodeError,
    decode_request,
    parse_media_type,
)

__all__ = ["TRACES_PATH", "ReceiverCounts", "TraceReceiver"]

TRACES_PATH = "/v1/traces"
_INFLATE_FACTOR = 16
_DRAIN_LIMIT_FACTOR = 4
"""An oversized body up to this many times ``max_body`` is read and discarded, so that the sender
gets its 413 rather than a reset connection; beyond, the connection is closed."""


@dataclass(frozen=True)
class ReceiverCounts:
    requests: int = 0
    """Export requests answered 200."""
    refused: int = 0
    """Requests answered 4xx."""
    spans: int = 0
    """Valid spans received (queued or dropped)."""
    invalid: int = 0
    """Spans refused for a missing or malformed trace or span id."""
    dropped: int = 0
    """Valid spans lost because the queue was full."""
    unattributed: int = 0
    """Queued spans whose region could not be told."""
    last_refusal: str = ""
    """The latest refusal: its status, method, path and why (``404 POST /v1/traces/v1/traces: only
    /v1/traces is served here``), for the run to name an exporter that was set up wrong."""


class TraceReceiver:
    """``start()``, point exporters at ``endpoint``, ``poll()`` as the run goes, ``stop()``."""

    def __init__(
        self,
        design: Design,
        *,
        port: int = 0,
        max_body: int = 4 << 20,
        max_queue: int = 100_000,
        read_timeout: float = 5.0,
    ) -> None:
        self._attributor = Attributor(design)
        self._port = port
        self.max_body = max_body
        self.read_timeout = read_timeout
        self._queue: queue.Queue[SpanRecord] = queue.Queue(maxsize=max_queue)
        self._lock = threading.Lock()
        self._counts = ReceiverCounts()
        self._offset_ns = 0
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle -----------------------------------------------------------------------------

    def start(self) -> None:
        if self._server is not None:
            raise RuntimeError("the trace receiver is already started")
        self._offset_ns = time.time_ns() - time.monotonic_ns()
        try:
            server = _Server(("127.0.0.1", self._port), _Handler)
        except OSError as exc:  # a port given (--otlp-port) that another process holds
            raise TargetError(
                f"the OTLP receiver cannot listen on 127.0.0.1:{self._port}: {exc.strerror or exc}"
            ) from exc
        server.receiver = self
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.05}, name="bascule-otlp", daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        """Stop serving and free the port (idempotent). Spans already queued stay for ``poll()``."""
        server, thread = self._server, self._thread
        self._server = self._thread = None
        if server is None:
            return
        server.shutdown()
        server.server_close()
        server.close_connections()
        if thread is not None:
            thread.join()

    def __enter__(self) -> TraceReceiver:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    # -- what the runner reads -----------------------------------------------------------------

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("the trace receiver is not started")
        return int(self._server.server_address[1])

    @property
    def endpoint(self) -> str:
        """The base URL for ``OTEL_EXPORTER_OTLP_ENDPOINT`` (exporters add ``/v1/traces``)."""
        return f"http://127.0.0.1:{self.port}"

    @property
    def traces_url(self) -> str:
        """The full URL, for ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`` (used as given)."""
        return self.endpoint + TRACES_PATH

    @property
    def counts(self) -> ReceiverCounts:
        with self._lock:
            return self._counts

    def poll(self) -> list[SpanRecord]:
        """The spans received since the last call, in the order they arrived."""
        out: list[SpanRecord] = []
        while True:
            try:
                out.append(self._queue.get_nowait())
            except queue.Empty:
                return out

    # -- called from the server's threads ------------------------------------------------------

    def _accept(self, body: bytes, encoding: Encoding, content_encoding: str | None) -> tuple[int, int]:
        """Decode, attribute and queue; returns (spans refused, spans dropped)."""
        decoded = decode_request(
            body, encoding, content_encoding=content_encoding, max_inflated=self.max_body * _INFLATE_FACTOR
        )
        records = [self._attributor.record(span, self._offset_ns) for span in decoded.spans]
        dropped = unattributed = 0
        for record in records:
            try:
                self._queue.put_nowait(record)
            except queue.Full:
                dropped += 1
                continue
            unattributed += record.region is None
        with self._lock:
            c = self._counts
            self._counts = replace(
                c,
                requests=c.requests + 1,
                spans=c.spans + len(records),
                invalid=c.invalid + decoded.invalid,
                dropped=c.dropped + dropped,
                unattributed=c.unattributed + unattributed,
            )
        return decoded.invalid, dropped

    def _refused(self, why: str) -> None:
        with self._lock:
            c = self._counts
            self._counts = replace(c, refused=c.refused + 1, last_refusal=why)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    receiver: TraceReceiver

    def __init__(self, address: tuple[str, int], handler: type[BaseHTTPRequestHandler]) -> None:
        super().__init__(address, handler)
        self._open: set[socket.socket] = set()
        self._open_lock = threading.Lock()

    def process_request(self, request: socket.socket, client_address: tuple[str, int]) -> None:  # type: ignore[override]
        with self._open_lock:
            self._open.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request: socket.socket) -> None:  # type: ignore[override]
        with self._open_lock:
            self._open.discard(request)
        super().shutdown_request(request)

    def close_connections(self) -> None:
        """End the keep-alive connections still open, so that their threads end and the port is free."""
        with self._open_lock:
            sockets = list(self._open)
        for sock in sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"
    server_version = "bascule-otlp"

    def setup(self) -> None:
        self.connection = self.request
        self.connection.settimeout(self.server.receiver.read_timeout)
        super().setup()

    def log_message(self, format: str, *args: object) -> None:
        """Silent: a run's output is its journal, not an access log."""

    def do_POST(self) -> None:
        receiver = self.server.receiver
        encoding = parse_media_type(self.headers.get("Content-Type"))
        if urlsplit(self.path).path != TRACES_PATH:
            self._fail(HTTPStatus.NOT_FOUND, encoding, f"only {TRACES_PATH} is served here")
            return
        if encoding is None:
            self._fail(
                HTTPStatus.UNSUPPORTED_MEDIA_TYPE,
                None,
                "send application/x-protobuf or application/json (OTLP/HTTP)",
            )
            return
        coding = (self.headers.get("Content-Encoding") or "identity").strip().lower()
        if coding not in ("identity", "gzip"):
            self._fail(HTTPStatus.UNSUPPORTED_MEDIA_TYPE, encoding, "send the body as is or gzip-encoded")
            return
        length = self._length()
        if length is None:
            self._fail(HTTPStatus.LENGTH_REQUIRED, encoding, "a Content-Length is required")
            return
        if length > receiver.max_body:
            self._discard(length, receiver.max_body * _DRAIN_LIMIT_FACTOR)
            self._fail(
                HTTPStatus.REQUEST_ENTITY_TOO_LARGE, encoding, f"the body is over {receiver.max_body} bytes"
            )
            return
        body = self.rfile.read(length)
        if len(body) < length:
            self.close_connection = True
            return
        try:
            invalid, dropped = receiver._accept(body, encoding, coding)
        except BodyTooLargeError as exc:
            self._fail(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, encoding, str(exc))
            return
        except TraceDecodeError as exc:
            self._fail(HTTPStatus.BAD_REQUEST, encoding, str(exc))
            return
        response = ExportTraceServiceResponse()
        if invalid or dropped:
            response.partial_success.rejected_spans = invalid + dropped
            response.partial_success.error_message = (
                f"{invalid} span(s) without a valid trace or span id, {dropped} dropped: the queue is full"
            )
        if encoding is Encoding.JSON:
            self._send(HTTPStatus.OK, encoding, json_format.MessageToJson(response, indent=None).encode())
        else:
            self._send(HTTPStatus.OK, encoding, response.SerializeToString())

    def _length(self) -> int | None:
        try:
            length = int(self.headers.get("Content-Length", ""))
        except ValueError:
            return None
        return length if length >= 0 else None

    def _discard(self, length: int, limit: int) -> None:
        if length > limit:
            self.close_connection = True
            return
        left = length
        try:
            while left > 0:
                chunk = self.rfile.read(min(left, 1 << 16))
                if not chunk:
                    break
                left -= len(chunk)
        except (TimeoutError, OSError):
            self.close_connection = True

    def _fail(self, status: HTTPStatus, encoding: Encoding | None, message: str) -> None:
        self.server.receiver._refused(f"{status.value} {self.command} {self.path[:200]}: {message}")
        if encoding is Encoding.JSON:
            body = json.dumps({"code": _RPC_CODES.get(status, 3), "message": message}).encode()
        else:
            body = _rpc_status(_RPC_CODES.get(status, 3), message)
        self._send(status, encoding or Encoding.PROTOBUF, body)

    def _send(self, status: HTTPStatus, encoding: Encoding, body: bytes) -> None:
        self.send_response(status)
        content_type = "application/json" if encoding is Encoding.JSON else "application/x-protobuf"
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        try:
            self.wfile.write(body)
        except OSError:
            self.close_connection = True


_RPC_CODES = {
    HTTPStatus.BAD_REQUEST: 3,  # INVALID_ARGUMENT
    HTTPStatus.NOT_FOUND: 5,  # NOT_FOUND
    HTTPStatus.LENGTH_REQUIRED: 3,
    HTTPStatus.REQUEST_ENTITY_TOO_LARGE: 8,  # RESOURCE_EXHAUSTED
    HTTPStatus.UNSUPPORTED_MEDIA_TYPE: 3,
}


def _rpc_status(code: int, message: str) -> bytes:
    """A ``google.rpc.Status`` {code = 1, message = 2} in protobuf's wire format."""
    text = message.encode()
    return b"\x08" + _varint(code) + b"\x12" + _varint(len(text)) + text


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte, value = value & 0x7F, value >> 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)
