"""The service under test in this example: a team-notes search API — not bascule's reference
gateway. Its request and response shapes are its own, and it keeps its notes in the key-value
service (``kv.py``) of its region, which it reaches at ``KV_URL``.

    KV_URL=http://127.0.0.1:8081 REGION=scaleway/fr-par python notes_api.py --port 8080

- ``POST /api/search {"q": "...", "team": "..."}`` →
  ``{"result": {"text": "...", "sources": [{"id": "...", "score": n}]}, "trace": [hops]}``: the
  note sharing most words with the question; ``trace`` names the api and the kv it used, with
  their regions (``{"component", "region"}``) — what bascule's sovereignty judge reads.
- ``POST /api/notes {"note_id", "body", "classification"}`` stores a note (201).
- ``GET /api/notes/ID`` returns it (404 when the region's kv does not have it).
- ``GET /healthz``: the api answers and its kv does (503 otherwise).

It keeps the team's handbook notes in its kv: it puts them back whenever they are missing (at
the first health check, and when a search finds the kv without them).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import threading
import urllib.error
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

KV_URL = os.environ.get("KV_URL", "http://127.0.0.1:8081").rstrip("/")
REGION = os.environ.get("REGION", "unknown")
KV_REGION = os.environ.get("KV_REGION", REGION)
TIMEOUT = float(os.environ.get("KV_TIMEOUT", "1.0"))

HANDBOOK = {
    "PUMP-5": "The circulation pumps carry a 5 years warranty from the date of commissioning.",
    "MOOR-2": "Each float is moored by four helical anchors, inspected every spring.",
    "SHIFT-1": "The night shift hands over at 06:00 and writes the handover in the plant log.",
}


# The W3C trace context of the request being handled (one thread per request), passed on to the
# kv: what an OpenTelemetry-instrumented HTTP client does by itself. It lets bascule tie each call
# to the kv to the request that caused it, so that it knows where every request went.
CURRENT = threading.local()


class KvError(Exception):
    """The kv did not answer, or answered with an error."""


def kv(method: str, path: str, body: bytes | None = None) -> tuple[int, bytes]:
    request = urllib.request.Request(KV_URL + path, data=body, method=method)
    traceparent = getattr(CURRENT, "traceparent", None)
    if traceparent:
        request.add_header("traceparent", traceparent)
    try:
        with urllib.request.urlopen(request, timeout=TIMEOUT) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        if exc.code == 404:
            return 404, b""
        raise KvError(f"kv answered {exc.code}") from exc
    except (urllib.error.URLError, OSError) as exc:
        raise KvError(f"kv unreachable: {exc}") from exc


def words(text: str) -> set[str]:
    return set(re.findall(r"[a-z0-9]+", text.lower()))


def notes() -> dict[str, dict[str, Any]]:
    _, raw = kv("GET", "/kv?prefix=note:")
    return {k[5:]: json.loads(v) for k, v in json.loads(raw)["items"].items()}


def search(question: str) -> tuple[str, list[dict[str, Any]]]:
    found = notes()
    if not HANDBOOK.keys() <= found.keys():
        # A kv that started after us, or restarted empty: put the handbook back.
        seed()
        found = notes()
    wanted = words(question)
    scored = sorted(((len(wanted & words(n["body"])), note_id) for note_id, n in found.items()), reverse=True)
    if not scored or scored[0][0] == 0:
        return "No note answers that.", []
    score, best = scored[0]
    return found[best]["body"], [{"id": best, "score": score}]


def trace() -> list[dict[str, str]]:
    return [
        {"component": "notes-api", "region": REGION},
        {"component": "kv", "region": KV_REGION},
    ]


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def _json(self, status: int, data: object) -> None:
        body = json.dumps(data).encode()
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _body(self) -> dict[str, Any]:
        length = int(self.headers.get("content-length") or 0)
        data = json.loads(self.rfile.read(length) or b"{}")
        if not isinstance(data, dict):
            raise ValueError("a JSON object, please")
        return data

    def do_GET(self) -> None:
        CURRENT.traceparent = self.headers.get("traceparent")
        try:
            if self.path == "/healthz":
                seed()
                self._json(200, {"status": "ok", "region": REGION})
            elif self.path.startswith("/api/notes/"):
                status, raw = kv("GET", "/kv/note:" + self.path[len("/api/notes/") :])
                if status == 404:
                    self._json(404, {"error": "no such note"})
                else:
                    self._json(200, json.loads(raw))
            else:
                self._json(404, {"error": "not found"})
        except KvError as exc:
            self._json(503, {"error": str(exc)})

    def do_POST(self) -> None:
        CURRENT.traceparent = self.headers.get("traceparent")
        try:
            body = self._body()
        except ValueError as exc:
            self._json(400, {"error": f"invalid JSON: {exc}"})
            return
        try:
            if self.path == "/api/search":
                text, sources = search(str(body.get("q", "")))
                self._json(200, {"result": {"text": text, "sources": sources}, "trace": trace()})
            elif self.path == "/api/notes":
                note = {
                    "note_id": str(body["note_id"]),
                    "body": str(body.get("body", "")),
                    "classification": str(body.get("classification", "internal")),
                }
                kv("PUT", "/kv/note:" + note["note_id"], json.dumps(note).encode())
                self._json(201, {"note_id": note["note_id"], "stored": True, "trace": trace()})
            else:
                self._json(404, {"error": "not found"})
        except KeyError as exc:
            self._json(400, {"error": f"missing field {exc}"})
        except KvError as exc:
            self._json(503, {"error": str(exc)})

    def log_message(self, format: str, *args: object) -> None:
        pass


def seed() -> None:
    """Put the handbook notes the kv lacks; raises KvError when it cannot be reached."""
    for note_id, text in HANDBOOK.items():
        if kv("GET", "/kv/note:" + note_id)[0] == 404:
            note = {"note_id": note_id, "body": text, "classification": "internal"}
            kv("PUT", "/kv/note:" + note_id, json.dumps(note).encode())


def main() -> None:
    parser = argparse.ArgumentParser(description="the team-notes search API")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    with ThreadingHTTPServer((args.host, args.port), Handler) as server:
        server.daemon_threads = True
        server.serve_forever()


if __name__ == "__main__":
    main()
