"""Shipping a replica's log to its peers: the I/O side of replication.

One shipper task per peer sends batches of the log to ``/v1/replicate``, retrying with
exponential back-off while the peer cannot be reached; sync writes wait on their progress.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Mapping
from typing import Any

import httpx

from bascule.stack.corpus import DataClass
from bascule.stack.store.config import BATCH_MAX_ENTRIES, ReplicationMode
from bascule.stack.store.log import PeerState
from bascule.stack.store.replica import Store

__all__ = ["Replicator"]

BATCH_MAX_BYTES = 2 * 1024 * 1024
BACKOFF_MIN = 0.05
BACKOFF_MAX = 1.0


class _ShipError(Exception):
    pass


class Replicator:
    """One shipper task per peer, and the wait of sync writes for their progress."""

    def __init__(self, store: Store, client: httpx.AsyncClient) -> None:
        self._store = store
        self._client = client
        config = store.config
        self._sync = config.replication is ReplicationMode.SYNC
        self._lag = 0.0 if self._sync else config.replication_lag
        self._wakeups = {url: asyncio.Event() for url in store.peers}
        self._progress = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []

    def start(self) -> None:
        for peer in self._store.peers.values():
            self._tasks.append(asyncio.create_task(self._ship_forever(peer)))

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()

    def written(self) -> None:
        """Wake the shippers: the log has a new entry."""
        for event in self._wakeups.values():
            event.set()

    def _broadcast(self) -> None:
        # A fresh event per change wakes every waiter once without a lock.
        self._progress.set()
        self._progress = asyncio.Event()

    def attempts(self) -> dict[str, int]:
        return {url: peer.attempts for url, peer in self._store.peers.items()}

    async def wait_settled(self, seq: int, attempts: Mapping[str, int], timeout: float) -> bool:
        """Wait until `Store.settled`; False when `timeout` seconds pass first."""
        try:
            async with asyncio.timeout(timeout):
                while not self._store.settled(seq, attempts):
                    await self._progress.wait()
        except TimeoutError:
            return False
        return True

    async def _ship_forever(self, peer: PeerState) -> None:
        backoff = BACKOFF_MIN
        wakeup = self._wakeups[peer.url]
        while True:
            wakeup.clear()
            entry = self._store.log.first_after(peer.shipped_seq)
            if entry is None:
                await wakeup.wait()
                continue
            delay = entry.accepted + self._lag - self._store.clock()
            if delay > 0:
                await asyncio.sleep(delay)
                continue
            try:
                await self._ship_batch(peer)
            except Exception as exc:
                # Any failure, even a bug, must show in the status and be retried: a dead
                # shipper task would stop replication silently.
                error = str(exc) if isinstance(exc, _ShipError) else f"internal: {exc!r}"
                peer.attempts += 1
                self._store.peer_failed(peer, error)
                self._broadcast()
                if self._sync:
                    # A sync write is waiting to learn whether the peer is back: try now.
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(wakeup.wait(), backoff)
                else:
                    await asyncio.sleep(backoff)
                backoff = min(backoff * 2, BACKOFF_MAX)
            else:
                peer.attempts += 1
                self._broadcast()
                backoff = BACKOFF_MIN

    async def _ship_batch(self, peer: PeerState) -> None:
        if peer.max_class is None:
            status = await self._call(peer, "GET", "/v1/replication", None)
            peer.max_class = _announced_class(status)
        batch = self._store.log.batch_after(
            peer.shipped_seq,
            accepted_by=self._store.clock() - self._lag,
            max_entries=BATCH_MAX_ENTRIES,
            max_bytes=BATCH_MAX_BYTES,
        )
        if not batch:
            return
        allowed = [entry for entry in batch if peer.accepts(entry.document.data_class)]
        if allowed:
            body = {
                "origin": self._store.origin,
                "entries": [{"seq": entry.seq, "doc": entry.document.to_wire()} for entry in allowed],
            }
            reply = await self._call(peer, "POST", "/v1/replicate", body)
            peer.max_class = _announced_class(reply)
        self._store.peer_shipped(peer, batch, len(allowed))

    async def _call(
        self, peer: PeerState, method: str, path: str, body: dict[str, Any] | None
    ) -> dict[str, Any]:
        try:
            async with asyncio.timeout(self._store.config.peer_timeout):
                response = await self._client.request(method, peer.url + path, json=body)
                content = response.content
        except TimeoutError:
            raise _ShipError(f"{method} {path}: no answer within timeout") from None
        except httpx.HTTPError as exc:
            raise _ShipError(f"{method} {path}: {type(exc).__name__}: {exc}") from exc
        if not response.is_success:
            excerpt = content[:200].decode("utf-8", errors="replace")
            raise _ShipError(f"{method} {path}: HTTP {response.status_code}: {excerpt}")
        try:
            reply = response.json()
        except ValueError as exc:
            raise _ShipError(f"{method} {path}: answer is not JSON") from exc
        if not isinstance(reply, dict):
            raise _ShipError(f"{method} {path}: answer is not a JSON object")
        return reply


def _announced_class(reply: Mapping[str, Any]) -> DataClass:
    try:
        return DataClass(reply["max_class"])
    except (KeyError, ValueError):
        raise _ShipError(f"peer announced no valid max_class: {reply.get('max_class')!r}") from None
