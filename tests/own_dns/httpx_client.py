"""A client of tests/test_own_dns.py, run as an own service: httpx (nobody here wrote it) asks
``SERVER_URL`` — a name in the run's zone — with the system's resolver (``getaddrinfo``).

    SERVER_URL=http://pong.scaleway-fr-par.bascule.internal:PORT python httpx_client.py --port PORT

``GET /ask`` asks ``SERVER_URL/pong`` over the client's pooled connection (kept alive 5 minutes);
``GET /ask?fresh=1`` with a new client, so a new connection and a new lookup. Either answers
``{"ok": bool, "status": int | null, "error": str | null}``.
"""

from __future__ import annotations

import argparse
import json
import os
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx

SERVER_URL = os.environ["SERVER_URL"]
LIMITS = httpx.Limits(max_connections=1, max_keepalive_connections=1, keepalive_expiry=300)
POOLED = httpx.Client(limits=LIMITS, timeout=20)
POOL_LOCK = threading.Lock()


def ask(fresh: bool) -> dict[str, object]:
    try:
        if fresh:
            with httpx.Client(timeout=20) as client:
                response = client.get(SERVER_URL + "/pong")
        else:
            with POOL_LOCK:
                response = POOLED.get(SERVER_URL + "/pong")
    except httpx.HTTPError as exc:
        return {"ok": False, "status": None, "error": f"{type(exc).__name__}: {exc}"}
    return {"ok": response.status_code == 200, "status": response.status_code, "error": None}


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        if self.path.startswith("/ask"):
            body = json.dumps(ask(fresh="fresh=1" in self.path)).encode()
        elif self.path == "/healthz":
            body = b"ok"
        else:
            self.send_error(404)
            return
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
