"""A caller of one component in two regions: ``GET /primary`` asks ``$PRIMARY``, ``GET /fallback``
asks ``$FALLBACK``, and answers what the callee said."""

from __future__ import annotations

import argparse
import os
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

parser = argparse.ArgumentParser()
parser.add_argument("--port", type=int, required=True)
args = parser.parse_args()
UPSTREAMS = {"/primary": os.environ["PRIMARY"], "/fallback": os.environ["FALLBACK"]}


class Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        upstream = UPSTREAMS.get(self.path)
        if upstream is None:
            self.send_response(200 if self.path == "/healthz" else 404)
            self.send_header("content-length", "0")
            self.end_headers()
            return
        try:
            with urllib.request.urlopen(upstream + "/", timeout=2) as answer:
                status, body = answer.status, answer.read()
        except OSError as exc:
            status, body = 502, str(exc).encode()
        self.send_response(status)
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *_: object) -> None:
        pass


ThreadingHTTPServer(("127.0.0.1", args.port), Handler).serve_forever()
