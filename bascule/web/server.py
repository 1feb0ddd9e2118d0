"""The page's HTTP server: one page, its server-sent events and its few actions, on loopback only,
behind a random token.

- ``GET /?token=…``: the page (`bascule.web.page`), self-contained.
- ``GET /events?token=…``: ``text/event-stream`` — every event published so far (a page opened
  late, or reloaded, draws the whole run), then each one as it is published, and a ``clock``
  event twice a second with the current run instant.
- ``POST /actions/NAME?token=…`` with a JSON object: one of the actions the command gave
  (``abort``; for ``stack up`` also ``inject`` and ``revert``); answers a JSON object.

A request without the token, or with a ``Host`` other than the loopback address it listens on (a
web page elsewhere rebinding a name to 127.0.0.1), is answered 403. Nothing is listened for beyond
127.0.0.1.
"""

from __future__ import annotations

import hmac
import json
import queue
import secrets
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from bascule.web.digest import PageEvent

__all__ = ["Action", "ActionError", "Feed", "PageServer"]

HOST = "127.0.0.1"
_CLOCK_S = 0.5
_HISTORY = 20_000
_BODY_LIMIT = 64_000


class ActionError(Exception):
    """An action refused what it was asked (answered 400 with the message)."""


Action = Callable[[Mapping[str, Any]], Mapping[str, Any]]
"""Takes the request's JSON object, answers one; raises `ActionError` to refuse."""


class Feed:
    """The events of one page: kept (bounded) for pages that connect later, and handed to every
    page connected. Thread-safe; `publish` never blocks."""

    def __init__(self, origin: float) -> None:
        self.origin = origin
        """``time.monotonic()`` of run second 0 (the journal's origin)."""
        self._lock = threading.Lock()
        self._history: deque[tuple[int, PageEvent]] = deque(maxlen=_HISTORY)
        self._next = 0
        self._queues: list[queue.SimpleQueue[tuple[int, PageEvent]]] = []

    def publish(self, event: PageEvent) -> None:
        with self._lock:
            item = (self._next, event)
            self._next += 1
            self._history.append(item)
            for q in self._queues:
                q.put(item)

    def connect(self) -> tuple[list[tuple[int, PageEvent]], queue.SimpleQueue[tuple[int, PageEvent]]]:
        """What was published so far, and the queue of what comes next."""
        q: queue.SimpleQueue[tuple[int, PageEvent]] = queue.SimpleQueue()
        with self._lock:
            self._queues.append(q)
            return list(self._history), q

    def disconnect(self, q: queue.SimpleQueue[tuple[int, PageEvent]]) -> None:
        with self._lock:
            if q in self._queues:
                self._queues.remove(q)

    def now(self) -> float:
        return round(time.monotonic() - self.origin, 3)


def _sse(index: int, event: PageEvent) -> bytes:
    # json.dumps escapes no newline left raw, so one data line per event.
    data = json.dumps(event.data, ensure_ascii=False, separators=(",", ":"), default=str)
    return f"id: {index}\nevent: {event.name}\ndata: {data}\n\n".encode()


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    page: PageServer


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:  # the terminal belongs to the live view
        return

    def _allowed(self) -> bool:
        page = self.server.page
        host = self.headers.get("Host", "")
        if host not in (f"{HOST}:{page.port}", f"localhost:{page.port}"):
            return False
        given = parse_qs(urlsplit(self.path).query).get("token", [""])[0]
        return hmac.compare_digest(given.encode(), page.token.encode())

    def _answer(self, status: int, body: bytes, content_type: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.send_header("X-Content-Type-Options", "nosniff")
        self.send_header("Referrer-Policy", "no-referrer")
        self.send_header(
            "Content-Security-Policy",
            "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; "
            "img-src data:; connect-src 'self'; form-action 'none'; frame-ancestors 'none'",
        )
        self.end_headers()
        self.wfile.write(body)

    def _json(self, status: int, data: Mapping[str, Any]) -> None:
        self._answer(status, json.dumps(data).encode(), "application/json")

    def do_GET(self) -> None:
        if not self._allowed():
            self._answer(403, b"forbidden: this page needs the token printed at start\n", "text/plain")
            return
        path = urlsplit(self.path).path
        if path == "/":
            self._answer(200, self.server.page.html().encode(), "text/html; charset=utf-8")
        elif path == "/events":
            self._stream()
        else:
            self._answer(404, b"not found\n", "text/plain")

    def do_POST(self) -> None:
        if not self._allowed():
            self._answer(403, b"forbidden: this page needs the token printed at start\n", "text/plain")
            return
        path = urlsplit(self.path).path
        action = self.server.page.actions.get(path.removeprefix("/actions/"))
        length = int(self.headers.get("Content-Length") or 0)
        if not path.startswith("/actions/") or action is None:
            self._answer(404, b"not found\n", "text/plain")
            return
        if length > _BODY_LIMIT:
            self._json(413, {"error": "request too large"})
            return
        try:
            body = json.loads(self.rfile.read(length) or b"{}")
            if not isinstance(body, dict):
                raise ActionError("the request is a JSON object")
            self._json(200, action(body))
        except (ActionError, ValueError) as exc:
            self._json(400, {"error": str(exc)})
        except Exception as exc:  # the page shows it; the command goes on
            self._json(500, {"error": f"{type(exc).__name__}: {exc}"})

    def _stream(self) -> None:
        page = self.server.page
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Cache-Control", "no-store")
        self.send_header("Connection", "close")
        self.end_headers()
        self.close_connection = True
        history, q = page.feed.connect()
        try:
            self.wfile.write(b"retry: 1000\n\n")
            for index, event in history:
                self.wfile.write(_sse(index, event))
            self.wfile.flush()
            next_clock = 0.0
            while not page.stopping.is_set():
                now = time.monotonic()
                if now >= next_clock:
                    clock = PageEvent("clock", {"t": page.feed.now()})
                    self.wfile.write(f"event: clock\ndata: {json.dumps(clock.data)}\n\n".encode())
                    self.wfile.flush()
                    next_clock = now + _CLOCK_S
                try:
                    index, event = q.get(timeout=max(0.01, next_clock - time.monotonic()))
                except queue.Empty:
                    continue
                self.wfile.write(_sse(index, event))
                self.wfile.flush()
            while True:  # stopping: what was published before (the run's end) still goes out
                try:
                    index, event = q.get_nowait()
                except queue.Empty:
                    break
                self.wfile.write(_sse(index, event))
            self.wfile.flush()
        except (BrokenPipeError, ConnectionResetError, TimeoutError):
            pass  # the page was closed
        finally:
            page.feed.disconnect(q)


class PageServer:
    """The page on 127.0.0.1:`port` (0: a free one). `html` renders the page (called per request,
    so that it can carry what changed); `actions` by name."""

    def __init__(
        self,
        feed: Feed,
        html: Callable[[str], str],
        actions: Mapping[str, Action],
        *,
        port: int = 0,
    ) -> None:
        self.feed = feed
        self.token = secrets.token_urlsafe(18)
        self.actions = dict(actions)
        self._render = html
        self._port = port
        self.stopping = threading.Event()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    def html(self) -> str:
        return self._render(self.token)

    @property
    def port(self) -> int:
        return self._port if self._server is None else int(self._server.server_address[1])

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}/?token={self.token}"

    def start(self) -> str:
        """Listen and serve in a thread; the page's URL (with its token). Raises `OSError` when the
        port cannot be bound."""
        server = _Server((HOST, self._port), _Handler)
        server.page = self
        self._server = server
        self._thread = threading.Thread(target=server.serve_forever, name="web-page", daemon=True)
        self._thread.start()
        return self.url

    def stop(self) -> None:
        """Stop listening; event streams end within half a second."""
        self.stopping.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
