"""The local target's control channel: faults set and cleared over HTTP/JSON on loopback.

A process that does not host the `FaultPlane`, `DnsServer` and `Supervisor` (the runner in another
process, `bascule recover` after a crash, `bascule inject` in an SRE's terminal) drives them
through a `ControlServer`: a small HTTP/1.1 server on 127.0.0.1 only, in a thread of its own, that
answers nothing without `Authorization: Bearer <token>`. The token is random
(`secrets.token_urlsafe(32)`) unless given, and compared in constant time.

Whole faults go through the stack's `FaultBoard` (``/v1/faults``), which keeps overlapping
faults right whichever process applied them; the part-level endpoints act directly and know
nothing of other faults on the same part.

    PUT    /v1/routes/{route}/fault      {"mode": "latency", "fixed": 0.2}   set a proxy fault
    DELETE /v1/routes/{route}/fault                                          back to pass
    PUT    /v1/routes/{route}/upstream   {"host": "127.0.0.1", "port": 8001}
    PUT    /v1/dns/faults/{name}         {"mode": "nodata"}                  name or *.suffix
    DELETE /v1/dns/faults/{name}
    PUT    /v1/dns/records/{name}        {"addresses": ["127.0.0.1"]}
    DELETE /v1/dns/records/{name}
    POST   /v1/processes/{name}/kill     {"restart_after": 0.5}     SIGKILL; restarted unless frozen
    POST   /v1/processes/{name}/pause                               SIGSTOP
    POST   /v1/processes/{name}/resume                              SIGCONT
    PUT    /v1/regions/{region}/freeze                              nothing restarts in the region
    DELETE /v1/regions/{region}/freeze                              thaw
    PUT    /v1/faults/{key}              {"effects": [...]}          apply a fault (409 if applied)
    DELETE /v1/faults/{key}                                         revert it ({"reverted": bool})
    GET    /v1/faults                                               the faults in force
    GET    /v1/faults/{key}/traffic                                 what reached its routes and names
                                                                    since applied (null: not counted)
    GET    /v1/state                                                         everything above

Route, DNS, process, region and fault names are percent-encoded in paths (route names and
regions contain `/`). Route fault bodies are `faultstate.dump_proxy_fault` mappings, effects
`effects.dump_effect` ones. `ControlClient` is the matching client.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import re
import secrets
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Final
from urllib.parse import quote, unquote, urlsplit

import httpx

from bascule.errors import FaultError, RevertError, TargetError
from bascule.stack.supervisor import Replica, Supervisor
from bascule.targets.base import FaultTraffic
from bascule.targets.local.board import FaultBoard
from bascule.targets.local.dns import DnsServer
from bascule.targets.local.effects import Effect, dump_effect, parse_effect
from bascule.targets.local.faultstate import (
    DnsFaultMode,
    ProxyFault,
    dump_proxy_fault,
    parse_proxy_fault,
)
from bascule.targets.local.proxy import (
    LOOPBACK,
    FaultPlane,
    HttpParseError,
    LoopThread,
    RequestHead,
    UnsupportedRequestError,
    parse_request_head,
    render_response,
)

__all__ = ["ControlClient", "ControlError", "ControlServer", "describe_process"]

_MAX_BODY: Final = 1 << 20
_MAX_HEAD: Final = 64 * 1024
_READ_TIMEOUT_S: Final = 30.0


def describe_process(replica: Replica) -> dict[str, object]:
    """A replica as the stack's state tells it: what runs, where, as which process, in which state."""
    return {
        "name": replica.spec.name,
        "region": replica.spec.group,
        "pid": replica.pid,
        "start_time": replica.start_time,
        "url": replica.url,
        "state": replica.state.value,
    }


class ControlError(TargetError):
    """The control server answered with an error status."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"control channel: HTTP {status}: {message}")
        self.status = status
        self.message = message


@dataclass(frozen=True, slots=True)
class _Reply:
    status: int
    body: object


class _HttpError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


_ROUTES: Final = [
    ("GET", re.compile(r"/v1/state"), "state"),
    ("PUT", re.compile(r"/v1/routes/([^/]+)/fault"), "set_route_fault"),
    ("DELETE", re.compile(r"/v1/routes/([^/]+)/fault"), "clear_route_fault"),
    ("PUT", re.compile(r"/v1/routes/([^/]+)/upstream"), "set_upstream"),
    ("PUT", re.compile(r"/v1/dns/faults/([^/]+)"), "set_dns_fault"),
    ("DELETE", re.compile(r"/v1/dns/faults/([^/]+)"), "clear_dns_fault"),
    ("PUT", re.compile(r"/v1/dns/records/([^/]+)"), "set_dns_record"),
    ("DELETE", re.compile(r"/v1/dns/records/([^/]+)"), "remove_dns_record"),
    ("POST", re.compile(r"/v1/processes/([^/]+)/kill"), "kill"),
    ("POST", re.compile(r"/v1/processes/([^/]+)/pause"), "pause"),
    ("POST", re.compile(r"/v1/processes/([^/]+)/resume"), "resume"),
    ("PUT", re.compile(r"/v1/regions/([^/]+)/freeze"), "freeze"),
    ("DELETE", re.compile(r"/v1/regions/([^/]+)/freeze"), "thaw"),
    ("GET", re.compile(r"/v1/faults"), "faults"),
    ("GET", re.compile(r"/v1/faults/([^/]+)/traffic"), "fault_traffic"),
    ("PUT", re.compile(r"/v1/faults/([^/]+)"), "apply_fault"),
    ("DELETE", re.compile(r"/v1/faults/([^/]+)"), "revert_fault"),
]
_WITH_BODY: Final = frozenset({"PUT", "POST"})


class ControlServer:
    """Serves the control API for a fault plane, a DNS server, a supervisor and/or a fault board
    on 127.0.0.1."""

    def __init__(
        self,
        *,
        plane: FaultPlane | None = None,
        dns: DnsServer | None = None,
        supervisor: Supervisor | None = None,
        board: FaultBoard | None = None,
        token: str | None = None,
    ) -> None:
        if token is not None and len(token) < 16:
            raise ValueError("a control token must be at least 16 characters")
        self._plane = plane
        self._dns = dns
        self._supervisor = supervisor
        self._board = board
        self._token = token if token is not None else secrets.token_urlsafe(32)
        self._thread = LoopThread("bascule-control")
        self._server: asyncio.Server | None = None
        self._port: int | None = None

    @property
    def token(self) -> str:
        return self._token

    @property
    def port(self) -> int:
        if self._port is None:
            raise RuntimeError("the control server is not started")
        return self._port

    @property
    def url(self) -> str:
        return f"http://{LOOPBACK}:{self.port}"

    def __enter__(self) -> ControlServer:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def start(self, port: int = 0) -> int:
        """Listen on 127.0.0.1:`port` (0: any free port); returns the port."""
        self._thread.start()

        async def listen() -> asyncio.Server:
            return await asyncio.start_server(
                self._handle, LOOPBACK, port, limit=_MAX_HEAD, reuse_address=True
            )

        try:
            server = asyncio.run_coroutine_threadsafe(listen(), self._thread.loop).result(5.0)
        except BaseException:
            self._thread.stop()
            raise
        self._server = server
        self._port = server.sockets[0].getsockname()[1]
        return self._port

    def stop(self) -> None:
        server = self._server

        async def shutdown() -> None:
            if server is not None:
                server.close()
            current = asyncio.current_task()
            tasks = [t for t in asyncio.all_tasks() if t is not current]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

        self._thread.stop(shutdown)
        self._server = None
        self._port = None

    # -- HTTP --

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                try:
                    head_bytes = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), _READ_TIMEOUT_S)
                except (asyncio.IncompleteReadError, TimeoutError):
                    return
                keep_alive = False
                try:
                    head = parse_request_head(head_bytes[:-4])
                    keep_alive = head.keep_alive
                    length = head.body_length
                    if length > _MAX_BODY:
                        raise _HttpError(413, "request body larger than 1 MiB")
                    body = await asyncio.wait_for(reader.readexactly(length), _READ_TIMEOUT_S)
                    # The plane and DNS calls only wait for a loop hop or a lock: brief enough
                    # to make here, on the control thread.
                    reply = self._dispatch(head, body)
                except (HttpParseError, UnsupportedRequestError) as exc:
                    keep_alive = False
                    reply = _Reply(400, {"error": str(exc)})
                except _HttpError as exc:
                    reply = _Reply(exc.status, {"error": exc.message})
                headers: tuple[tuple[str, str], ...] = ()
                if reply.status == 401:
                    headers = (("www-authenticate", 'Bearer realm="bascule"'),)
                writer.write(
                    render_response(
                        reply.status,
                        json.dumps(reply.body).encode(),
                        headers=(*headers, ("cache-control", "no-store")),
                        keep_alive=keep_alive,
                    )
                )
                await writer.drain()
                if not keep_alive:
                    return
        except (asyncio.LimitOverrunError, ValueError, ConnectionError):
            return
        finally:
            writer.close()

    def _authorized(self, head: RequestHead) -> bool:
        scheme, _, credential = (head.header("authorization") or "").partition(" ")
        return scheme.lower() == "bearer" and hmac.compare_digest(
            credential.strip().encode(), self._token.encode()
        )

    def _dispatch(self, head: RequestHead, body: bytes) -> _Reply:
        if not self._authorized(head):
            return _Reply(401, {"error": "missing or wrong bearer token"})
        path = urlsplit(head.target).path
        allowed: list[str] = []
        for method, pattern, action in _ROUTES:
            match = pattern.fullmatch(path)
            if match is None:
                continue
            if method != head.method:
                allowed.append(method)
                continue
            handler: Callable[..., object] = getattr(self, "_" + action)
            args = [unquote(g) for g in match.groups()]
            data: dict[str, Any] = {}
            if head.method in _WITH_BODY:
                data = _json_object(body)
            try:
                result = handler(*args, data) if head.method in _WITH_BODY else handler(*args)
            except _HttpError:
                raise
            except KeyError as exc:
                return _Reply(404, {"error": str(exc.args[0]) if exc.args else "not found"})
            except (ValueError, TypeError) as exc:
                return _Reply(400, {"error": str(exc)})
            except Exception as exc:
                # Whatever the plane or the DNS server raised, the caller gets an answer rather
                # than a dropped connection.
                return _Reply(500, {"error": f"{type(exc).__name__}: {exc}"})
            return _Reply(200, result)
        if allowed:
            return _Reply(405, {"error": f"use {' or '.join(allowed)} on {path}"})
        return _Reply(404, {"error": f"no such endpoint: {head.method} {path}"})

    def _need_plane(self) -> FaultPlane:
        if self._plane is None:
            raise KeyError("this control server has no fault plane")
        return self._plane

    def _need_dns(self) -> DnsServer:
        if self._dns is None:
            raise KeyError("this control server has no DNS server")
        return self._dns

    def _need_supervisor(self) -> Supervisor:
        if self._supervisor is None:
            raise KeyError("this control server has no process supervisor")
        return self._supervisor

    def _need_board(self) -> FaultBoard:
        if self._board is None:
            raise KeyError("this control server has no fault board")
        return self._board

    def _state(self) -> dict[str, object]:
        state: dict[str, object] = {}
        if self._plane is not None:
            state["routes"] = {
                name: {
                    "port": info.port,
                    "upstreams": [{"host": u.host, "port": u.port} for u in info.upstreams],
                    "fault": dump_proxy_fault(info.fault),
                    "stats": {k: getattr(info.stats, k) for k in info.stats.__dataclass_fields__},
                }
                for name, info in self._plane.routes().items()
            }
        if self._dns is not None:
            stats = self._dns.stats()
            try:
                dns_port: int | None = self._dns.port
            except RuntimeError:
                dns_port = None
            state["dns"] = {
                "zone": self._dns.zone,
                "port": dns_port,
                "records": {k: list(v) for k, v in self._dns.records().items()},
                "faults": {k: v.value for k, v in self._dns.faults().items()},
                "stats": {
                    "queries": stats.queries,
                    "by_outcome": dict(stats.by_outcome),
                    "by_name": dict(stats.by_name),
                },
            }
        if self._supervisor is not None:
            replicas = self._supervisor.replicas()
            state["processes"] = [{**describe_process(r), "restarts": r.restarts} for r in replicas]
            groups = sorted({r.spec.group for r in replicas})
            state["frozen"] = [g for g in groups if self._supervisor.is_frozen(g)]
        if self._board is not None:
            state["faults"] = self._faults()["faults"]
        return state

    def _set_route_fault(self, name: str, data: dict[str, Any]) -> dict[str, object]:
        plane = self._need_plane()
        state = parse_proxy_fault(data)
        plane.set_fault(name, state)
        return {"route": name, "fault": dump_proxy_fault(state)}

    def _clear_route_fault(self, name: str) -> dict[str, object]:
        plane = self._need_plane()
        plane.clear_fault(name)
        return {"route": name, "fault": dump_proxy_fault(plane.fault(name))}

    def _set_upstream(self, name: str, data: dict[str, Any]) -> dict[str, object]:
        host, port = data.get("host"), data.get("port")
        if not isinstance(host, str) or not isinstance(port, int) or isinstance(port, bool):
            raise ValueError('an upstream is {"host": "<ip>", "port": <int>}')
        self._need_plane().set_upstream(name, host, port)
        return {"route": name, "upstream": {"host": host, "port": port}}

    def _set_dns_fault(self, name: str, data: dict[str, Any]) -> dict[str, object]:
        dns = self._need_dns()
        try:
            mode = DnsFaultMode(data.get("mode"))
        except ValueError:
            known = ", ".join(m.value for m in DnsFaultMode)
            raise ValueError(f"unknown DNS fault mode {data.get('mode')!r} (known: {known})") from None
        dns.set_fault(name, mode)
        return {"name": name, "mode": mode.value}

    def _clear_dns_fault(self, name: str) -> dict[str, object]:
        self._need_dns().clear_fault(name)
        return {"name": name, "mode": None}

    def _set_dns_record(self, name: str, data: dict[str, Any]) -> dict[str, object]:
        addresses = data.get("addresses")
        if not isinstance(addresses, list) or not all(isinstance(a, str) for a in addresses):
            raise ValueError('a record is {"addresses": ["127.0.0.1", ...]}')
        self._need_dns().set_record(name, addresses)
        return {"name": name, "addresses": addresses}

    def _remove_dns_record(self, name: str) -> dict[str, object]:
        self._need_dns().remove_record(name)
        return {"name": name, "addresses": []}

    def _process_call(self, name: str, act: Callable[[Supervisor], None]) -> dict[str, object]:
        supervisor = self._need_supervisor()
        try:
            act(supervisor)
        except TargetError as exc:
            raise KeyError(str(exc)) from None
        replica = supervisor.replica(name)
        return {"name": name, "pid": replica.pid, "state": replica.state.value}

    def _kill(self, name: str, data: dict[str, Any]) -> dict[str, object]:
        delay = data.get("restart_after")
        if delay is not None and (isinstance(delay, bool) or not isinstance(delay, int | float) or delay < 0):
            raise ValueError(f"restart_after must be a number >= 0 or null, got {delay!r}")
        after = None if delay is None else float(delay)
        return self._process_call(name, lambda s: s.kill(name, restart_after=after))

    def _pause(self, name: str, data: dict[str, Any]) -> dict[str, object]:
        return self._process_call(name, lambda s: s.pause(name))

    def _resume(self, name: str, data: dict[str, Any]) -> dict[str, object]:
        return self._process_call(name, lambda s: s.resume(name))

    def _freeze(self, region: str, data: dict[str, Any]) -> dict[str, object]:
        self._need_supervisor().freeze(region)
        return {"region": region, "frozen": True}

    def _thaw(self, region: str) -> dict[str, object]:
        self._need_supervisor().thaw(region)
        return {"region": region, "frozen": False}

    def _faults(self) -> dict[str, object]:
        active = self._need_board().active()
        return {"faults": {key: [dump_effect(e) for e in effects] for key, effects in active.items()}}

    def _apply_fault(self, key: str, data: dict[str, Any]) -> dict[str, object]:
        raw = data.get("effects")
        if not isinstance(raw, list) or not all(isinstance(e, dict) for e in raw):
            raise ValueError('a fault is {"effects": [{"op": ...}, ...]}')
        effects = [parse_effect(e) for e in raw]
        board = self._need_board()
        if key in board.active():
            raise _HttpError(409, f"fault {key!r} is already applied")
        try:
            board.apply(key, effects)
        except FaultError as exc:
            raise _HttpError(502, str(exc)) from None
        return {"key": key, "applied": True}

    def _fault_traffic(self, key: str) -> dict[str, object]:
        traffic = self._need_board().traffic(key)
        return {"key": key, "traffic": None if traffic is None else traffic.to_json()}

    def _revert_fault(self, key: str) -> dict[str, object]:
        try:
            reverted = self._need_board().revert(key)
        except RevertError as exc:
            raise _HttpError(502, str(exc)) from None
        return {"key": key, "reverted": reverted}


def _json_object(body: bytes) -> dict[str, Any]:
    try:
        data = json.loads(body or b"{}")
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise _HttpError(400, f"the body is not JSON: {exc}") from None
    if not isinstance(data, dict):
        raise _HttpError(400, "the body must be a JSON object")
    return data


class ControlClient:
    """Talks to a `ControlServer`; refuses any address but 127.0.0.1 so the token stays local."""

    def __init__(self, url: str, token: str, *, timeout: float = 5.0) -> None:
        parts = urlsplit(url)
        if parts.scheme != "http" or parts.hostname != LOOPBACK:
            raise ValueError(f"the control channel is only reachable on http://{LOOPBACK}, not {url}")
        self._http = httpx.Client(
            base_url=url,
            headers={"authorization": f"Bearer {token}"},
            timeout=timeout,
            trust_env=False,
        )

    def __enter__(self) -> ControlClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    def state(self) -> dict[str, Any]:
        return self._request("GET", "/v1/state")

    def set_route_fault(self, route: str, fault: ProxyFault) -> None:
        self._request("PUT", f"/v1/routes/{_segment(route)}/fault", dump_proxy_fault(fault))

    def clear_route_fault(self, route: str) -> None:
        self._request("DELETE", f"/v1/routes/{_segment(route)}/fault")

    def set_upstream(self, route: str, host: str, port: int) -> None:
        self._request("PUT", f"/v1/routes/{_segment(route)}/upstream", {"host": host, "port": port})

    def set_dns_fault(self, name: str, mode: DnsFaultMode) -> None:
        self._request("PUT", f"/v1/dns/faults/{_segment(name)}", {"mode": mode.value})

    def clear_dns_fault(self, name: str) -> None:
        self._request("DELETE", f"/v1/dns/faults/{_segment(name)}")

    def set_dns_record(self, name: str, addresses: list[str]) -> None:
        self._request("PUT", f"/v1/dns/records/{_segment(name)}", {"addresses": addresses})

    def remove_dns_record(self, name: str) -> None:
        self._request("DELETE", f"/v1/dns/records/{_segment(name)}")

    def kill(self, name: str, *, restart_after: float | None = None) -> None:
        self._request("POST", f"/v1/processes/{_segment(name)}/kill", {"restart_after": restart_after})

    def pause(self, name: str) -> None:
        self._request("POST", f"/v1/processes/{_segment(name)}/pause", {})

    def resume(self, name: str) -> None:
        self._request("POST", f"/v1/processes/{_segment(name)}/resume", {})

    def freeze(self, region: str) -> None:
        self._request("PUT", f"/v1/regions/{_segment(region)}/freeze", {})

    def thaw(self, region: str) -> None:
        self._request("DELETE", f"/v1/regions/{_segment(region)}/freeze")

    def apply_fault(self, key: str, effects: Sequence[Effect]) -> None:
        """Apply a fault on the stack's board; `ControlError` 409 if `key` is already applied,
        502 if an effect failed (the board undid the rest)."""
        body = {"effects": [dump_effect(e) for e in effects]}
        self._request("PUT", f"/v1/faults/{_segment(key)}", body)

    def revert_fault(self, key: str) -> bool:
        """Revert a fault; False when it was not in force."""
        return bool(self._request("DELETE", f"/v1/faults/{_segment(key)}").get("reverted"))

    def fault_traffic(self, key: str) -> FaultTraffic | None:
        """What reached the fault's routes and names since it was applied (`FaultBoard.traffic`)."""
        data = self._request("GET", f"/v1/faults/{_segment(key)}/traffic").get("traffic")
        if not isinstance(data, dict):
            return None
        return FaultTraffic(
            **{k: int(data.get(k) or 0) for k in ("connections", "bytes", "lookups", "resets", "faulted")},
            on_answers=bool(data.get("on_answers")),
        )

    def faults(self) -> dict[str, list[Effect]]:
        data = self._request("GET", "/v1/faults").get("faults", {})
        return {key: [parse_effect(e) for e in effects] for key, effects in data.items()}

    def _request(self, method: str, path: str, body: object = None) -> dict[str, Any]:
        response = self._http.request(method, path, json=body)
        try:
            data = response.json()
        except ValueError:
            data = {"error": response.text}
        if response.status_code != 200:
            message = data.get("error", response.text) if isinstance(data, dict) else str(data)
            raise ControlError(response.status_code, str(message))
        if not isinstance(data, dict):
            raise ControlError(response.status_code, f"unexpected answer {data!r}")
        return data


def _segment(name: str) -> str:
    return quote(name, safe="")
