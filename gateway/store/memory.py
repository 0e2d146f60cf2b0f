"""In-process store: the default for one process, and the reference the contract tests hold Redis to."""

from __future__ import annotations

import asyncio
import copy
import time
from collections.abc import Collection
from typing import Any

from gateway.store.base import Subscription, Write

__all__ = ["MemoryStore"]

_CHANNEL_MAX = 1024


class MemoryStore:
    """Dicts keyed like :mod:`gateway.store.keys`, values deep-copied in and out (no aliasing with callers)."""

    def __init__(self) -> None:
        self._conn: dict[str, dict[str, Any]] = {}
        self._boot: dict[str, dict[str, Any]] = {}
        self._status: dict[str, dict[str, dict[str, Any]]] = {}
        self._tx: dict[tuple[str, str], dict[str, Any]] = {}
        self._cred: dict[str, dict[str, Any]] = {}
        self._upcred: dict[tuple[str, str], dict[str, Any]] = {}
        self._route: dict[str, dict[str, Any]] = {}
        #: cid -> (node, expiry on the monotonic clock)
        self._owner: dict[str, tuple[str, float]] = {}
        self._channels: dict[str, set[asyncio.Queue[bytes]]] = {}

    async def ping(self) -> None:
        return None

    async def apply(self, writes: list[Write]) -> None:
        for w in writes:
            v = copy.deepcopy(w.value)
            if w.kind == "conn":
                if v is None and w.sub:
                    owner = self._live_owner(w.cid)
                    if owner is not None and owner != w.sub:
                        continue  # another node owns the charger now: its records stay
                if v is None:
                    self._owner.pop(w.cid, None)
                _put(self._conn, w.cid, v)
            elif w.kind == "boot":
                _put(self._boot, w.cid, v)
            elif w.kind == "status":
                _put(self._status.setdefault(w.cid, {}), w.sub, v)
            elif w.kind == "tx":
                _put(self._tx, (w.cid, w.sub), v)
            elif w.kind == "cred":
                _put(self._cred, w.cid, v)
            elif w.kind == "upcred":
                _put(self._upcred, (w.cid, w.sub), v)
            elif w.kind == "route":
                _put(self._route, w.cid, v)

    async def get_connection(self, cid: str) -> dict[str, Any] | None:
        return copy.deepcopy(self._conn.get(cid))

    async def list_connections(self) -> dict[str, dict[str, Any]]:
        return {cid: copy.deepcopy(v) for cid, v in self._conn.items() if self._live_owner(cid) is not None}

    def _live_owner(self, cid: str) -> str | None:
        o = self._owner.get(cid)
        if o is None:
            return None
        if o[1] <= time.monotonic():
            del self._owner[cid]
            return None
        return o[0]

    async def claim_owner(self, cid: str, node: str, ttl_s: float) -> str | None:
        prev = self._live_owner(cid)
        self._owner[cid] = (node, time.monotonic() + ttl_s)
        return prev

    async def refresh_owners(self, node: str, cids: Collection[str], ttl_s: float) -> list[str]:
        lost = []
        until = time.monotonic() + ttl_s
        for cid in cids:
            owner = self._live_owner(cid)
            if owner is None or owner == node:
                self._owner[cid] = (node, until)
            else:
                lost.append(cid)
        return lost

    async def get_owner(self, cid: str) -> str | None:
        return self._live_owner(cid)

    async def publish(self, node: str, message: bytes) -> int:
        sent = 0
        for q in self._channels.get(node, set()):
            if not q.full():  # bounded: a subscriber that stopped reading loses messages, as on Redis
                q.put_nowait(message)
                sent += 1
        return sent

    async def subscribe(self, node: str) -> Subscription:
        q: asyncio.Queue[bytes] = asyncio.Queue(maxsize=_CHANNEL_MAX)
        self._channels.setdefault(node, set()).add(q)
        return _MemorySubscription(self, node, q)

    async def get_boot(self, cid: str) -> dict[str, Any] | None:
        return copy.deepcopy(self._boot.get(cid))

    async def get_statuses(self, cid: str) -> dict[str, dict[str, Any]]:
        return copy.deepcopy(self._status.get(cid, {}))

    async def get_translation_state(self, cid: str, backend: str) -> dict[str, Any] | None:
        return copy.deepcopy(self._tx.get((cid, backend)))

    async def get_route_override(self, cid: str) -> dict[str, Any] | None:
        return copy.deepcopy(self._route.get(cid))

    async def list_route_overrides(self) -> dict[str, dict[str, Any]]:
        return copy.deepcopy(self._route)

    async def get_password_hash(self, cid: str) -> str | None:
        v = self._cred.get(cid)
        h = v.get("hash") if v else None
        return h if isinstance(h, str) else None

    async def get_upstream_password(self, cid: str, backend: str) -> str | None:
        v = self._upcred.get((cid, backend))
        pw = v.get("password") if v else None
        return pw if isinstance(pw, str) else None

    async def close(self) -> None:
        return None


class _MemorySubscription:
    def __init__(self, store: MemoryStore, node: str, queue: asyncio.Queue[bytes]) -> None:
        self._store = store
        self._node = node
        self._queue = queue

    async def get(self, timeout: float) -> bytes | None:
        try:
            async with asyncio.timeout(timeout):
                return await self._queue.get()
        except TimeoutError:
            return None

    async def close(self) -> None:
        self._store._channels.get(self._node, set()).discard(self._queue)


def _put(d: dict[Any, dict[str, Any]], key: Any, value: dict[str, Any] | None) -> None:
    if value is None:
        d.pop(key, None)
    else:
        d[key] = value
