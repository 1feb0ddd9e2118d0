"""The callee of tests/test_own_dns.py: an HTTP/1.1 server with keep-alive, run as an own service.

    python pong.py --port PORT

``GET /pong`` answers ``pong``; ``GET /seen`` (asked on its own port, not through the route) lists
``[monotonic time, user agent]`` of every ``/pong`` it answered, so that the test knows which
requests arrived after a fault was in force. ``GET /healthz`` is its readiness.
"""

from __future__ import annotations

import argparse
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

SEEN: list[tuple[float, str]] = []
LOCK = threading.Lock()


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive: clients pool their connection to the route

    def do_GET(self) -> None:
        if self.path == "/pong":
            with LOCK:
                SEEN.append((time.monotonic(), self.headers.get("user-agent", "")))
            self._send(b"pong")
        elif self.path == "/seen":
            with LOCK:
                self._send(json.dumps(SEEN).encode())
        elif self.path == "/healthz":
            self._send(b"ok")
        else:
            self.send_error(404)

    def _send(self, body: bytes) -> None:
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    ThreadingHTTPServer(("127.0.0.1", parser.parse_args().port), Handler).serve_forever()
