"""A recording relay in front of a real kube-apiserver: what a client sent over the wire, counted
apart from the client's own bookkeeping.

The relay serves TLS on 127.0.0.1 with the API server's certificate (its names include 127.0.0.1),
relays every request — headers, bearer token and body — to the API server, and records each one's
method and path before relaying it. A kubeconfig pointed at the relay reaches the same cluster, as
the same user; `Relay.seen` is then every request the client made, as the server side saw them.
"""

from __future__ import annotations

import contextlib
import ssl
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
from control_plane import free_port

_HOP = {"connection", "keep-alive", "transfer-encoding", "content-length", "content-encoding", "host"}


class Relay:
    """One relay: `url` reaches `upstream`; `seen` lists (method, path without query) in order."""

    def __init__(self, upstream: str, ca: Path, cert: Path, key: Path) -> None:
        self.upstream = upstream
        self.seen: list[tuple[str, str]] = []
        self._lock = threading.Lock()
        self._client = httpx.Client(
            base_url=upstream, verify=ssl.create_default_context(cafile=str(ca)), timeout=30
        )
        port = free_port()
        relay = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _relay(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                body = self.rfile.read(length) if length else None
                with relay._lock:
                    relay.seen.append((self.command, self.path.split("?", 1)[0]))
                headers = [(k, v) for k, v in self.headers.items() if k.lower() not in _HOP]
                answer = relay._client.request(self.command, self.path, content=body, headers=headers)
                self.send_response(answer.status_code)
                for name, value in answer.headers.multi_items():
                    if name.lower() not in _HOP:
                        self.send_header(name, value)
                self.send_header("content-length", str(len(answer.content)))
                self.end_headers()
                self.wfile.write(answer.content)

            def do_GET(self) -> None:
                self._relay()

            def do_POST(self) -> None:
                self._relay()

            def do_PATCH(self) -> None:
                self._relay()

            def do_PUT(self) -> None:
                self._relay()

            def do_DELETE(self) -> None:
                self._relay()

            def log_message(self, format: str, *args: object) -> None:
                return

        self._server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(str(cert), str(key))
        self._server.socket = context.wrap_socket(self._server.socket, server_side=True)
        self._server.daemon_threads = True
        self.url = f"https://127.0.0.1:{port}"
        self._thread = threading.Thread(target=self._server.serve_forever, name=f"relay-{port}", daemon=True)
        self._thread.start()

    def requests(self) -> list[tuple[str, str]]:
        with self._lock:
            return list(self.seen)

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=10)
        self._client.close()


@contextlib.contextmanager
def relaying(upstream: str, ca: Path, cert: Path, key: Path) -> Iterator[Relay]:
    relay = Relay(upstream, ca, cert, key)
    try:
        yield relay
    finally:
        relay.stop()
