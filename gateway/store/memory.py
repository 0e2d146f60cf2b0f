"""In-process store: the default for one process, and the reference the contract tests hold Redis to."""

from __future__ import annotations

import asyncio
import copy
import itertools
import time
from collections import deque
from collections.abc import Collection, Sequence
from typing import Any

import orjson

from gateway.ocpp.jsontext import right_sized
from gateway.store.base import StoreUnavailable, Subscription, Write
from gateway.store.compliance import MemoryCompliance
from gateway.store.outbox import Batch, Entry, Items, Outbox, Packed, SpoolEntry

__all__ = ["MemoryLease", "MemoryOutbox", "MemoryStore"]

_CHANNEL_MAX = 1024


def _copied(value: Any) -> Any:
    """A write's value, copied so that nothing aliases the caller's objects: through JSON, as the Redis store keeps
    it (orjson: a translator's state of 32 transactions in ~1/15 of ``copy.deepcopy``'s time, which was a third
    of a translating gateway's CPU under load); what orjson cannot write (a key that is not a string, an integer
    beyond 64 bits) is deep-copied instead."""
    if value is None:
        return None
    try:
        return orjson.loads(orjson.dumps(value))
    except orjson.JSONEncodeError:
        return copy.deepcopy(value)


def _encoded(value: dict[str, Any] | bytes) -> bytes | dict[str, Any]:
    """A translation state or a charger's record as the store keeps it: its JSON text, or a deep copy of what orjson
    cannot write. A translating charger writes its state at every step (~22 kB with the shared load's 32 transactions
    per charger): copying it as objects, and freeing the copy it replaced, was a third of a translating gateway's CPU
    under load (py-spy). A write that carries the text already (a translation state, right-sized by the relay) is
    kept as it is; text written here is right-sized (orjson's buffer is ~4 kB for a record of ~200 bytes)."""
    if isinstance(value, bytes):
        return value
    try:
        return right_sized(orjson.dumps(value))
    except orjson.JSONEncodeError:
        return copy.deepcopy(value)


def _decoded(kept: bytes | dict[str, Any] | None) -> dict[str, Any] | None:
    """What :func:`_encoded` kept, as a new object (nothing aliases the store's copy)."""
    if kept is None:
        return None
    value: dict[str, Any] = orjson.loads(kept) if isinstance(kept, bytes) else copy.deepcopy(kept)
    return value


class MemoryStore:
    """Dicts keyed like :mod:`gateway.store.keys`, values copied in (through JSON, as Redis keeps them) and
    deep-copied out (no aliasing with callers). A charger's own records (connection, boot, statuses) are kept as
    their JSON text, as Redis keeps them: one object each instead of a dict of strings (~1.25 → ~0.6 KB per idle
    charger, ``bench/idle_memory.py``), and read back by parsing it."""

    def __init__(self) -> None:
        #: a charger's connection, boot and status records: JSON text (or, for what orjson cannot write, a deep copy)
        self._conn: dict[str, Any] = {}
        self._boot: dict[str, Any] = {}
        self._status: dict[str, dict[str, Any]] = {}
        #: translation states, as JSON text (or, for what orjson cannot write, a deep copy)
        self._tx: dict[tuple[str, str], Any] = {}
        self._cred: dict[str, dict[str, Any]] = {}
        #: cid -> (verification proof, expiry on the monotonic clock)
        self._proof: dict[str, tuple[bytes, float]] = {}
        self._upcred: dict[tuple[str, str], dict[str, Any]] = {}
        self._route: dict[str, dict[str, Any]] = {}
        self._site: dict[str, dict[str, dict[str, Any]]] = {}
        self._ride: dict[str, dict[str, dict[str, Any]]] = {}
        self._ride_auth: dict[str, dict[str, dict[str, Any]]] = {}
        #: cid -> (node, expiry on the monotonic clock)
        self._owner: dict[str, tuple[str, float]] = {}
        self._channels: dict[str, set[asyncio.Queue[bytes]]] = {}
        self._outbox = MemoryOutbox()
        self._compliance = MemoryCompliance()

    async def ping(self) -> None:
        return None

    async def apply(self, writes: list[Write]) -> None:
        for w in writes:
            if w.kind == "tx":  # kept as its JSON text, as Redis keeps it: one object to replace, not thousands
                if w.value is None:
                    self._tx.pop((w.cid, w.sub), None)
                else:
                    self._tx[(w.cid, w.sub)] = _encoded(w.value)
                continue
            if w.kind == "conn":
                if w.value is None and w.sub:
                    owner = self._live_owner(w.cid)
                    if owner is not None and owner != w.sub:
                        continue  # another node owns the charger now: its records stay
                if w.value is None:
                    self._owner.pop(w.cid, None)
                _put(self._conn, w.cid, None if w.value is None else _encoded(w.value))
                continue
            if w.kind == "boot":
                _put(self._boot, w.cid, None if w.value is None else _encoded(w.value))
                continue
            if w.kind == "status":
                _put(self._status.setdefault(w.cid, {}), w.sub, None if w.value is None else _encoded(w.value))
                continue
            v = _copied(w.value)
            if w.kind == "cred":
                _put(self._cred, w.cid, v)
                if v is None:
                    self._proof.pop(w.cid, None)
            elif w.kind == "upcred":
                _put(self._upcred, (w.cid, w.sub), v)
            elif w.kind == "route":
                _put(self._route, w.cid, v)
            elif w.kind == "site":
                _put(self._site.setdefault(w.cid, {}), w.sub, v)
            elif w.kind == "ride":
                _put(self._ride.setdefault(w.cid, {}), w.sub, v)
            elif w.kind == "rideauth":
                _put(self._ride_auth.setdefault(w.cid, {}), w.sub, v)

    async def get_connection(self, cid: str) -> dict[str, Any] | None:
        return _decoded(self._conn.get(cid))

    async def list_connections(self) -> dict[str, dict[str, Any]]:
        return {
            cid: v
            for cid, kept in self._conn.items()
            if self._live_owner(cid) is not None and (v := _decoded(kept)) is not None
        }

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
        return _decoded(self._boot.get(cid))

    async def get_statuses(self, cid: str) -> dict[str, dict[str, Any]]:
        return {c: v for c, kept in self._status.get(cid, {}).items() if (v := _decoded(kept)) is not None}

    async def get_translation_state(self, cid: str, backend: str) -> dict[str, Any] | None:
        return _decoded(self._tx.get((cid, backend)))

    async def get_route_override(self, cid: str) -> dict[str, Any] | None:
        return copy.deepcopy(self._route.get(cid))

    async def list_route_overrides(self) -> dict[str, dict[str, Any]]:
        return copy.deepcopy(self._route)

    async def get_site(self, site: str) -> dict[str, dict[str, Any]]:
        return copy.deepcopy(self._site.get(site, {}))

    async def get_ride(self, cid: str) -> dict[str, dict[str, Any]]:
        return copy.deepcopy(self._ride.get(cid, {}))

    async def get_ride_auth(self, backend: str) -> dict[str, dict[str, Any]]:
        return copy.deepcopy(self._ride_auth.get(backend, {}))

    async def get_password_hash(self, cid: str) -> str | None:
        v = self._cred.get(cid)
        h = v.get("hash") if v else None
        return h if isinstance(h, str) else None

    async def get_password_hash_and_proof(self, cid: str, proof_ttl_s: float) -> tuple[str | None, bytes | None]:
        proof = self._proof.get(cid)
        now = time.monotonic()
        if proof is not None and proof[1] <= now:
            del self._proof[cid]
            proof = None
        if proof is not None:
            self._proof[cid] = (proof[0], now + proof_ttl_s)
        return await self.get_password_hash(cid), None if proof is None else proof[0]

    async def put_password_proof(self, cid: str, proof: bytes, ttl_s: float) -> None:
        self._proof[cid] = (bytes(proof), time.monotonic() + ttl_s)

    async def get_upstream_password(self, cid: str, backend: str) -> str | None:
        v = self._upcred.get((cid, backend))
        pw = v.get("password") if v else None
        return pw if isinstance(pw, str) else None

    def outbox(self) -> Outbox:
        return self._outbox

    def compliance(self) -> MemoryCompliance:
        return self._compliance

    def lease(self, key: str, holder: str, ttl_s: float) -> MemoryLease:
        return MemoryLease()

    async def add_to_stream(self, key: str, events: Sequence[bytes], max_len: int) -> None:
        raise StoreUnavailable("a redis_stream tap needs the Redis store")

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


class MemoryLease:
    """One process, nobody to share with: always held."""

    shared = False

    async def hold(self) -> bool:
        return True

    async def release(self) -> None:
        return None


def _put(d: dict[Any, Any], key: Any, value: Any) -> None:
    if value is None:
        d.pop(key, None)
    else:
        d[key] = value


class MemoryOutbox:
    """Per-process outboxes (the memory store: lost on restart, as the rest of the memory store)."""

    def __init__(self) -> None:
        self._streams: dict[str, deque[Entry]] = {}
        self._seq = 0
        # spools keep their batches packed (one entry per write, as Redis does), with the copies in them and how
        # many of the oldest one's are trimmed
        self._spools: dict[str, deque[SpoolEntry]] = {}
        self._spool_total: dict[str, int] = {}
        self._registry: dict[str, set[str]] = {}

    async def append(self, stream: str, items: Items, max_len: int, max_age_s: float) -> int:
        return self._append(stream, items, max_len, max_age_s, time.time())

    def _append(self, stream: str, items: Items, max_len: int, max_age_s: float, at: float) -> int:
        q = self._streams.setdefault(stream, deque())
        now = time.time()
        for item in items.entries() if isinstance(items, Packed) else items:
            self._seq += 1
            kept = right_sized(item) if isinstance(item, bytes) else item  # orjson's text holds ~4 kB each
            q.append(Entry(f"{int(at * 1000)}-{self._seq}", kept, at))
        trimmed = 0
        while len(q) > max_len or (q and max_age_s > 0 and now - q[0].at > max_age_s):
            q.popleft()
            trimmed += 1
        return trimmed

    async def spools(self, registry: str, prefix: str) -> list[str]:
        return sorted(s for s in self._registry.get(registry, set()) if s.startswith(prefix))

    async def spool_forget(self, registry: str, spool: str) -> None:
        if not self._spools.get(spool):
            self._registry.get(registry, set()).discard(spool)

    async def spool_append(self, spool: str, packed: Packed, max_len: int, max_age_s: float, registry: str) -> int:
        self._registry.setdefault(registry, set()).add(spool)
        q = self._spools.setdefault(spool, deque())
        now = time.time()
        if packed.count:
            self._seq += 1
            q.append(SpoolEntry(f"{int(now * 1000)}-{self._seq}", now, 0, packed))
        total = self._spool_total.get(spool, 0) + packed.count
        trimmed = 0
        while q:
            head = q[0]
            n, skip = head.packed.count, head.skip
            if max_age_s > 0 and now - head.at > max_age_s:
                trimmed, total = trimmed + n - skip, total - (n - skip)
                q.popleft()
            elif total > max_len:
                drop = min(total - max_len, n - skip)
                trimmed, total = trimmed + drop, total - drop
                if skip + drop >= n:
                    q.popleft()
                else:
                    q[0] = SpoolEntry(head.id, head.at, skip + drop, head.packed)
            else:
                break
        self._spool_total[spool] = total
        return trimmed

    async def spool_head(self, spool: str) -> SpoolEntry | None:
        q = self._spools.get(spool)
        return q[0] if q else None

    async def spool_move(self, spool: str, entry: SpoolEntry, batches: Sequence[Batch]) -> list[int] | None:
        q = self._spools.get(spool)
        if not q or q[0].id != entry.id or q[0].skip != entry.skip:
            return None
        out = [
            self._append(stream, items, max_len, max_age_s, entry.at) for stream, items, max_len, max_age_s in batches
        ]
        q.popleft()
        self._spool_total[spool] -= entry.packed.count - entry.skip
        return out

    async def read(self, stream: str, count: int) -> list[Entry]:
        q = self._streams.get(stream)
        return list(itertools.islice(q, count)) if q else []

    async def ack(self, stream: str, ids: list[str]) -> None:
        q = self._streams.get(stream)
        if not q:
            return
        drop = set(ids)
        while q and q[0].id in drop:  # the usual case: the oldest, delivered in order
            drop.discard(q.popleft().id)
        if drop:
            self._streams[stream] = deque(e for e in q if e.id not in drop)

    async def stats(self, stream: str) -> tuple[int, float | None]:
        q = self._streams.get(stream)
        if not q:
            return 0, None
        return len(q), max(0.0, time.time() - q[0].at)

    async def streams(self, prefix: str) -> list[str]:
        return sorted(s for s, q in self._streams.items() if q and s.startswith(prefix))
