"""The example's token service (its STS): the API must hold a valid token to use its database.

    python tokens.py --port 8090 --ttl 4

``POST /token`` issues a random token valid ``ttl`` seconds (``{"token", "ttl"}``), ``GET
/check/TOKEN`` says whether one is valid (200, else 401), ``GET /healthz``. bascule's `identity`
fault acts on the routes to it: errors, latency, or nothing answering.
"""

from __future__ import annotations

import argparse
import json
import secrets
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

ISSUED: dict[str, float] = {}
LOCK = threading.Lock()
SETTINGS = {"ttl": 4.0}


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def _send(self, status: int, body: dict[str, object]) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("content-length") or 0))
        if self.path != "/token":
            self._send(404, {"error": "not found"})
            return
        token = secrets.token_urlsafe(16)
        now = time.monotonic()
        with LOCK:
            for old in [t for t, until in ISSUED.items() if until < now]:
                del ISSUED[old]
            ISSUED[token] = now + SETTINGS["ttl"]
        self._send(200, {"token": token, "ttl": SETTINGS["ttl"]})

    def do_GET(self) -> None:
        if self.path == "/healthz":
            self._send(200, {"status": "ok"})
        elif self.path.startswith("/check/"):
            with LOCK:
                until = ISSUED.get(self.path[len("/check/") :], 0.0)
            self._send(200 if until > time.monotonic() else 401, {"valid": until > time.monotonic()})
        else:
            self._send(404, {"error": "not found"})

    def log_message(self, format: str, *args: object) -> None:
        pass


def main() -> None:
    parser = argparse.ArgumentParser(description="the example's token service")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--ttl", type=float, default=4.0)
    args = parser.parse_args()
    SETTINGS["ttl"] = args.ttl
    ThreadingHTTPServer(("127.0.0.1", args.port), Handler).serve_forever()


if __name__ == "__main__":
    main()
