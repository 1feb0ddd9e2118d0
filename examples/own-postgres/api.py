"""The example's notes API, one per region, in front of that region's PostgreSQL.

    python api.py --port 8080 --region ovhcloud/gra --primary-region scaleway/fr-par \
        --db scaleway/fr-par=db.scaleway-fr-par.bascule.internal:41001 \
        --db ovhcloud/gra=db.ovhcloud-gra.bascule.internal:41002 --tokens http://127.0.0.1:41003

Each database is given as REGION=HOST:PORT (or REGION=PORT, on 127.0.0.1). The design gives the
hosts as names of bascule's DNS server (``{db@REGION.dns_host}``), so that every new connection
looks its database up, as a DynamoDB client looks its endpoint up: a ``dns`` fault on the name
fails new connections and leaves the pooled ones working.

- ``POST /api/notes {"id", "text"}``: INSERT on the current primary — its own region's database
  when that one is the primary, else the other region's, through the cross-region route; 201 only
  once PostgreSQL has acknowledged the COMMIT (with synchronous replication, once the standby has
  it too). 503 when there is no primary to write to, no valid token, or this region is fenced.
- ``GET /api/notes/ID``: read from its own region's database (a standby may be behind): 200 or 404.
- ``POST /api/ask {"q"}``: how many notes its region's database holds.
- ``GET /healthz``: 200 when its database answers, it holds a valid token and is not fenced.

Credentials: the API must hold a token of its region's token service (`tokens.py`) to use the
database, as an AWS service needs STS credentials for DynamoDB. It refreshes it when 30 % of its
lifetime is left; if the refresh fails it keeps using the token until it expires, then answers
503 until a refresh succeeds.

Failover — who promotes and how: the API of a standby region runs `SELECT pg_promote()` on its own
database when (1) that database is a standby, (2) the primary region's database has not answered
a new connection for `--promote-after` seconds (3 s) and (3) clients are reaching this API (a
request within those seconds: the edge has failed over here). Condition 3 keeps a partition that
clients do not see from promoting a second primary. A name that does not resolve is no evidence
that the primary is down — only that the lookup failed — so it restarts the 3 s: the primary's
record emptied while clients are here (the incident's first phase, with STS failing) makes this
API answer 503 to writes, never promote. The primary region's API fences itself —
answers 503 to everything, health included, for the rest of the run — once it sees the other
region's database promoted, so that no write lands on the old primary after a failover.
"""

from __future__ import annotations

import argparse
import json
import queue
import socket
import sys
import threading
import time
from collections.abc import Callable
from contextlib import suppress
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib import request as urlrequest

import pg8000.native

QUERY_TIMEOUT_S = 2.0
CHECK_TIMEOUT_S = 1.0


def log(message: str) -> None:
    """One line on stderr (the replica's log), stamped with the wall clock's UTC time, which the
    run's journal records next to each fault (``wall``)."""
    now = datetime.now(UTC).isoformat(timespec="milliseconds")
    print(f"{now} api: {message}", file=sys.stderr, flush=True)


def unresolved(exc: BaseException) -> bool:
    """Whether a connection failed because its host name did not resolve (pg8000 wraps the error)."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, socket.gaierror):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


class Pool:
    """A few connections to one database, opened on demand; a broken one is dropped. An idle
    connection is reused as it is: only a new one looks the host up. An idle connection found dead
    when used (its server restarted, its route reset) is replaced by a new one once, as a pool's
    pre-ping would; one that timed out is not (the database may be slow, not gone)."""

    def __init__(self, host: str, port: int, size: int = 4) -> None:
        self.host = host
        self.port = port
        self._idle: queue.LifoQueue[pg8000.native.Connection] = queue.LifoQueue()
        self._slots = threading.BoundedSemaphore(size)

    def _open(self) -> pg8000.native.Connection:
        return pg8000.native.Connection(
            "postgres", host=self.host, port=self.port, database="postgres", timeout=QUERY_TIMEOUT_S
        )

    @staticmethod
    def _run_on(conn: pg8000.native.Connection, sql: str, params: dict[str, Any]) -> list[list[Any]]:
        try:
            return conn.run(sql, **params) or []
        except Exception:
            with suppress(Exception):
                conn.close()
            raise

    def run(self, sql: str, **params: Any) -> list[list[Any]]:
        if not self._slots.acquire(timeout=QUERY_TIMEOUT_S):
            raise TimeoutError(f"no free connection to {self.host}:{self.port}")
        try:
            try:
                conn, pooled = self._idle.get_nowait(), True
            except queue.Empty:
                conn, pooled = self._open(), False
            try:
                rows = self._run_on(conn, sql, params)
            except pg8000.native.InterfaceError as exc:
                if not pooled or isinstance(exc.__cause__, TimeoutError):
                    raise
                conn = self._open()
                rows = self._run_on(conn, sql, params)
            self._idle.put(conn)
            return rows
        finally:
            self._slots.release()


def in_recovery(pool: Pool) -> bool:
    """Asked on a new connection each time (its host looked up again), so that a cut route shows
    at once."""
    conn = pg8000.native.Connection(
        "postgres", host=pool.host, port=pool.port, database="postgres", timeout=CHECK_TIMEOUT_S
    )
    try:
        return bool(conn.run("SELECT pg_is_in_recovery()")[0][0])
    finally:
        conn.close()


class Credentials:
    def __init__(self, url: str) -> None:
        self.url = url
        self.token: str | None = None
        self.expires = 0.0
        self.ttl = 0.0
        self._lock = threading.Lock()

    def valid(self) -> bool:
        with self._lock:
            now = time.monotonic()
            if self.token is None or self.expires - now < 0.3 * self.ttl:
                try:
                    req = urlrequest.Request(f"{self.url}/token", data=b"{}", method="POST")
                    with urlrequest.urlopen(req, timeout=1.0) as answer:
                        body = json.loads(answer.read())
                    self.token, self.ttl = body["token"], float(body["ttl"])
                    self.expires = now + self.ttl
                except Exception as exc:  # the token service failing: keep the old token while it lasts
                    if self.token is not None and self.expires > now:
                        return True
                    log(f"no valid token: {exc}")
                    return False
            return True


def parse_db(value: str) -> Pool:
    """HOST:PORT, or PORT on 127.0.0.1."""
    host, _, port = value.rpartition(":")
    return Pool(host or "127.0.0.1", int(port))


class State:
    def __init__(self, args: argparse.Namespace) -> None:
        dbs = dict(item.split("=", 1) for item in args.db)
        self.region: str = args.region
        self.home: bool = args.region == args.primary_region
        self.local = parse_db(dbs[args.region])
        peer = [r for r in dbs if r != args.region]
        self.peer_region = peer[0]
        self.peer = parse_db(dbs[peer[0]])
        self.creds = Credentials(args.tokens)
        self.promote_after: float = args.promote_after
        self.local_standby = not self.home
        self.peer_standby = self.home
        self.peer_seen = time.monotonic()
        self.last_request = 0.0
        self.fenced = False
        self.failing: dict[str, str] = {}
        """Pool → the error its last check failed with (logged once when it starts, once when it ends)."""

    def writer(self) -> Pool | None:
        if not self.local_standby:
            return self.local
        if not self.peer_standby:
            return self.peer
        return None

    def check(self, pool: Pool) -> bool | None:
        """Whether `pool`'s database is a standby (None: it did not answer), logging each change."""
        where = f"{pool.host}:{pool.port}"
        try:
            standby = in_recovery(pool)
        except Exception as exc:
            why = f"{type(exc).__name__}: {exc}"
            cause = exc.__cause__
            if cause is not None:
                why += f" ({type(cause).__name__}: {cause})"
            if where not in self.failing:
                log(f"cannot open a connection to {where}: {why}")
            self.failing[where] = why
            if unresolved(exc) and pool is self.peer:
                # The lookup failed, not the database: no evidence that the primary is down.
                self.peer_seen = time.monotonic()
            return None
        if self.failing.pop(where, None) is not None:
            log(f"{where} answers new connections again")
        return standby

    def monitor(self) -> None:
        while True:
            time.sleep(0.5)
            local = self.check(self.local)
            if local is not None:
                self.local_standby = local
            peer = self.check(self.peer)
            if peer is not None:
                self.peer_standby = peer
                self.peer_seen = time.monotonic()
            now = time.monotonic()
            if (
                self.local_standby
                and now - self.peer_seen >= self.promote_after
                and now - self.last_request < self.promote_after
            ):
                log(f"{self.peer_region} unreachable for {now - self.peer_seen:.1f} s: pg_promote()")
                try:
                    self.local.run("SELECT pg_promote(true, 10)")
                    self.local_standby = False
                    log("promoted")
                except Exception as exc:
                    log(f"promotion failed: {exc}")
            if self.home and not self.local_standby and not self.peer_standby and not self.fenced:
                self.fenced = True
                log(f"{self.peer_region} was promoted: fenced, this region takes no more requests")


def make_handler(state: State) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def _send(self, status: int, body: dict[str, object]) -> None:
            data = json.dumps(body).encode()
            try:
                self.send_response(status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)
            except (BrokenPipeError, ConnectionResetError):
                pass  # the client gave up waiting (a write blocked on synchronous commit)

        def _guard(self) -> bool:
            state.last_request = time.monotonic()
            if state.fenced:
                self._send(503, {"error": f"fenced: {state.peer_region} was promoted"})
                return False
            if not state.creds.valid():
                self._send(503, {"error": "no valid token: the token service is failing"})
                return False
            return True

        def _answer(self, act: Callable[[], tuple[int, dict[str, object]]]) -> None:
            try:
                status, body = act()
            except Exception as exc:
                why = f"{type(exc).__name__}: {exc}"
                if exc.__cause__ is not None:
                    why += f" ({type(exc.__cause__).__name__}: {exc.__cause__})"
                log(f"{self.command} {self.path}: 503, database: {why}")
                status, body = 503, {"error": f"database: {why}"}
            self._send(status, body)

        def do_GET(self) -> None:
            if self.path == "/healthz":
                healthy = not state.fenced and state.creds.valid()
                if healthy:
                    try:
                        state.local.run("SELECT 1")
                    except Exception:
                        healthy = False
                self._send(200 if healthy else 503, {"region": state.region, "fenced": state.fenced})
            elif self.path.startswith("/api/notes/"):
                if self._guard():
                    note = self.path[len("/api/notes/") :]

                    def read() -> tuple[int, dict[str, object]]:
                        rows = state.local.run("SELECT body FROM notes WHERE id = :id", id=note)
                        if not rows:
                            return 404, {"error": "not found", "region": state.region}
                        return 200, {"id": note, "text": rows[0][0], "region": state.region}

                    self._answer(read)
            else:
                self._send(404, {"error": "not found"})

        def do_POST(self) -> None:
            try:
                body = json.loads(self.rfile.read(int(self.headers.get("content-length") or 0)) or b"{}")
            except ValueError:
                self._send(400, {"error": "a JSON body"})
                return
            if self.path == "/api/notes":
                if self._guard():

                    def write() -> tuple[int, dict[str, object]]:
                        pool = state.writer()
                        if pool is None:
                            return 503, {"error": "no primary database to write to"}
                        pool.run(
                            "INSERT INTO notes (id, body) VALUES (:id, :body) ON CONFLICT (id) DO NOTHING",
                            id=str(body["id"]),
                            body=str(body.get("text", "")),
                        )
                        return 201, {"id": body["id"], "region": state.region}

                    self._answer(write)
            elif self.path == "/api/ask":
                if self._guard():

                    def ask() -> tuple[int, dict[str, object]]:
                        count = state.local.run("SELECT count(*) FROM notes")[0][0]
                        return 200, {"answer": f"{count} notes in {state.region}", "q": body.get("q")}

                    self._answer(ask)
            else:
                self._send(404, {"error": "not found"})

        def log_message(self, format: str, *args: object) -> None:
            pass

    return Handler


def main() -> None:
    parser = argparse.ArgumentParser(description="the example's notes API")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--region", required=True)
    parser.add_argument("--primary-region", required=True)
    parser.add_argument(
        "--db", action="append", required=True, help="REGION=HOST:PORT (or REGION=PORT), for both regions"
    )
    parser.add_argument("--tokens", required=True)
    parser.add_argument("--promote-after", type=float, default=3.0)
    args = parser.parse_args()
    state = State(args)
    if state.home:
        # The primary creates the table; the standby gets it by replication.
        deadline = time.monotonic() + 170  # past the design's start_timeout: bascule stops it first
        while True:
            try:
                state.local.run("CREATE TABLE IF NOT EXISTS notes (id text PRIMARY KEY, body text NOT NULL)")
                break
            except Exception as exc:
                if time.monotonic() > deadline:
                    raise
                log(f"waiting for the database: {exc}")
                time.sleep(0.5)
    threading.Thread(target=state.monitor, daemon=True).start()
    server = ThreadingHTTPServer(("127.0.0.1", args.port), make_handler(state))
    server.daemon_threads = True
    log(f"{args.region} on 127.0.0.1:{args.port}")
    server.serve_forever()


if __name__ == "__main__":
    main()
