"""A tiny key-value service: the notes API's dependency, run as a process of its own.

    python kv.py --port 8081

``PUT /kv/KEY`` stores the request body (201), ``GET /kv/KEY`` returns it (404 when absent),
``GET /kv?prefix=P`` lists ``{"items": {key: value}}`` for the keys starting with P, ``GET /healthz``.
Everything is in memory: a restarted kv has lost what it held, as a cache node would.
"""

from __future__ import annotations

import argparse
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

STORE: dict[str, str] = {}
LOCK = threading.Lock()


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def _send(self, status: int, body: bytes = b"", kind: str = "application/json") -> None:
        self.send_response(status)
        self.send_header("content-type", kind)
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:
        url = urlsplit(self.path)
        if url.path == "/healthz":
            self._send(200, b'{"status": "ok"}')
        elif url.path == "/kv":
            prefix = parse_qs(url.query).get("prefix", [""])[0]
            with LOCK:
                items = {k: v for k, v in STORE.items() if k.startswith(prefix)}
            self._send(200, json.dumps({"items": items}).encode())
        elif url.path.startswith("/kv/"):
            with LOCK:
                value = STORE.get(url.path[4:])
            if value is None:
                self._send(404, b'{"error": "not found"}')
            else:
                self._send(200, value.encode(), "text/plain; charset=utf-8")
        else:
            self._send(404, b'{"error": "not found"}')

    def do_PUT(self) -> None:
        url = urlsplit(self.path)
        if not url.path.startswith("/kv/") or len(url.path) == 4:
            self._send(404, b'{"error": "not found"}')
            return
        length = int(self.headers.get("content-length") or 0)
        value = self.rfile.read(length).decode("utf-8")
        with LOCK:
            STORE[url.path[4:]] = value
        self._send(201, b'{"stored": true}')

    def log_message(self, format: str, *args: object) -> None:
        pass


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    with ThreadingHTTPServer((args.host, args.port), Handler) as server:
        server.daemon_threads = True
        server.serve_forever()


if __name__ == "__main__":
    main()
