"""Redis store (redis.asyncio). Keys are documented in :mod:`gateway.store.keys`.

URLs: ``redis://host:port/db``, ``rediss://…`` (TLS), ``unix:///path``, and
``redis+sentinel://[:password@]host:port[,host:port…]/<service_name>[/db]`` for Sentinel.
Every failure to reach Redis becomes :class:`~gateway.store.base.StoreUnavailable`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Collection, Sequence
from typing import Any
from urllib.parse import unquote, urlsplit

import orjson
import redis.asyncio as aioredis
from redis.asyncio.client import Pipeline, PubSub
from redis.asyncio.sentinel import Sentinel
from redis.exceptions import RedisError

from gateway.store.base import StoreUnavailable, Subscription, Write
from gateway.store.keys import Keys
from gateway.store.redis_compliance import RedisCompliance
from gateway.store.redis_outbox import RedisOutbox

__all__ = ["RedisLease", "RedisStore"]

_TIMEOUTS: dict[str, Any] = {"socket_timeout": 2.0, "socket_connect_timeout": 2.0, "health_check_interval": 15}
#: Redis connections of one process. redis-py (>= 6) bounds its default pool at 100 and fails the 101st concurrent
#: command with "Too many connections": a reconnect storm (hundreds of admissions reading credentials, routes and
#: ownership at once) then refused chargers with 503 store_unavailable. The blocking pool makes a command wait for a
#: free connection instead, up to ``_POOL_WAIT_S``; 64 connections pipeline far more than one process needs.
_POOL_SIZE, _POOL_WAIT_S = 64, 5.0
#: Sentinel has no blocking pool in redis-py: a bound high enough that only a runaway could reach it
_SENTINEL_POOL_SIZE = 4096
#: ownership refreshes per pipeline: building and reading a pipeline costs ~25-30 µs of CPU per command in redis-py,
#: and the event loop runs nothing else while it builds one. 5,000 chargers in one pipeline (130-200 ms of CPU every
#: ``owner_ttl_s / 3``) paused the loop 26-57 ms at a time, a pause every connected charger's round trip paid; in
#: pipelines of 256 the longest pause is 2.3-2.7 ms (2-core VM, ``bench/store_cost.py``).
_REFRESH_CHUNK = 256

# Ownership scripts touch the keys of one charger only (one hash slot: fine on Redis Cluster).
#: KEYS[1] owner; ARGV node, ttl ms: extend our ownership, or claim it again when it expired; 0 when another owns it
_REFRESH = """
local v = redis.call('GET', KEYS[1])
if v == false or v == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return 1
end
return 0
"""
#: KEYS[1] owner, KEYS[2] conn; ARGV node: delete both unless another node owns the charger now
_RELEASE = """
local v = redis.call('GET', KEYS[1])
if v and v ~= ARGV[1] then return 0 end
redis.call('DEL', KEYS[1], KEYS[2])
return 1
"""
#: KEYS[1] owner, KEYS[2] conn: delete a stale connection record (its owner key expired)
_PRUNE = """
if redis.call('EXISTS', KEYS[1]) == 0 then redis.call('DEL', KEYS[2]) return 1 end
return 0
"""


# one call: extend the lease we hold, or take it when nobody holds it; 1 when we hold it afterwards
_HOLD = """
local v = redis.call('GET', KEYS[1])
if v == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
if not v then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return 1
end
return 0
"""
_LEASE_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""


def _loads(raw: bytes | str | None) -> dict[str, Any] | None:
    if raw is None:
        return None
    v = orjson.loads(raw)
    return v if isinstance(v, dict) else None


#: units of commands per auto-pipeline (each a read or a claim of one or two commands)
_COALESCE_MAX = 128
#: queues one command on a pipeline (``lambda p: p.get(key)``): the pipeline's methods apply the same reply
#: callbacks as the client's (``SET … GET`` answers the old value, not True)
Command = Callable[[Pipeline], Any]


class _Coalescer:
    """Auto-pipelining (what ioredis calls it): the single reads and claims issued during one iteration of the event
    loop go to Redis as one pipeline, sent at the next iteration. In a reconnect storm hundreds of admissions each
    read a route, a credential and claim ownership at once; one command alone costs ~95-150 µs of the gateway's CPU
    in redis-py (a pool checkout, a send and a read of its own), one among others in a pipeline ~50-55 µs (2-core
    VM, 5,000 GETs with 8-500 at once, ``bench/store_cost.py``). A lone command waits one loop iteration more.

    Each call is a unit of one or more commands and gets their replies in order; a reply that is an error, or a
    pipeline that fails, raises :class:`StoreUnavailable` in every unit it concerns. A caller that stops waiting
    (cancelled) leaves the others' replies as they are."""

    def __init__(self, client: aioredis.Redis) -> None:
        self._r = client
        self._batch: list[tuple[tuple[Command, ...], asyncio.Future[list[Any]]]] = []
        self._sending: set[asyncio.Task[None]] = set()

    async def __call__(self, *commands: Command) -> list[Any]:
        loop = asyncio.get_running_loop()
        if not self._batch:
            loop.call_soon(self._flush)
        fut: asyncio.Future[list[Any]] = loop.create_future()
        self._batch.append((commands, fut))
        if len(self._batch) >= _COALESCE_MAX:
            self._flush()  # a pipeline is built and read in one go: bounded, as the ownership refresh is
        return await fut

    def _flush(self) -> None:
        batch, self._batch = self._batch, []
        if not batch:
            return
        task = asyncio.get_running_loop().create_task(self._send(batch), name="redis-pipeline")
        self._sending.add(task)
        task.add_done_callback(self._sending.discard)

    async def _send(self, batch: list[tuple[tuple[Command, ...], asyncio.Future[list[Any]]]]) -> None:
        pipe = self._r.pipeline(transaction=False)
        for commands, _ in batch:
            for command in commands:
                command(pipe)
        try:
            replies = await pipe.execute(raise_on_error=False)
        except (RedisError, OSError, asyncio.CancelledError) as e:
            failed = StoreUnavailable(str(e) or "store closed")
            for _, fut in batch:
                if not fut.done():
                    fut.set_exception(failed)
            if isinstance(e, asyncio.CancelledError):
                raise
            return
        at = 0
        for commands, fut in batch:
            part, at = replies[at : at + len(commands)], at + len(commands)
            if fut.done():
                continue
            error = next((r for r in part if isinstance(r, Exception)), None)
            if error is not None:
                fut.set_exception(StoreUnavailable(str(error)))
            else:
                fut.set_result(part)

    async def close(self) -> None:
        for task in list(self._sending):
            task.cancel()
        await asyncio.gather(*self._sending, return_exceptions=True)


class RedisStore:
    """The production store: shared by every process and replica."""

    def __init__(self, client: aioredis.Redis, prefix: str = "ocppgw") -> None:
        self._r = client
        self.keys = Keys(prefix)
        self._refresh = client.register_script(_REFRESH)
        self._release = client.register_script(_RELEASE)
        self._prune = client.register_script(_PRUNE)
        self._hold = client.register_script(_HOLD)
        self._lease_release = client.register_script(_LEASE_RELEASE)
        self._outbox = RedisOutbox(client)
        self._compliance = RedisCompliance(client, self.keys)
        self._co = _Coalescer(client)

    @classmethod
    def from_url(cls, url: str, prefix: str = "ocppgw") -> RedisStore:
        if url.startswith("redis+sentinel://"):
            u = urlsplit(url)
            hosts = []
            for part in u.netloc.rsplit("@", 1)[-1].split(","):
                host, _, port = part.partition(":")
                hosts.append((host, int(port or 26379)))
            segs = [s for s in u.path.split("/") if s]
            if not segs:
                raise ValueError("redis+sentinel:// URL needs /<service_name>")
            service, db = segs[0], int(segs[1]) if len(segs) > 1 else 0
            password = unquote(u.password) if u.password else None
            sentinel = Sentinel(  # type: ignore[no-untyped-call]
                hosts, sentinel_kwargs={"password": password} if password else {}, **_TIMEOUTS
            )
            client = sentinel.master_for(service, db=db, password=password, max_connections=_SENTINEL_POOL_SIZE)
            return cls(client, prefix)
        pool = aioredis.BlockingConnectionPool.from_url(
            url, max_connections=_POOL_SIZE, timeout=_POOL_WAIT_S, **_TIMEOUTS
        )
        return cls(aioredis.Redis.from_pool(pool), prefix)  # from_pool: closing the client closes the pool

    async def ping(self) -> None:
        try:
            await self._r.ping()
        except (RedisError, OSError) as e:
            raise StoreUnavailable(str(e)) from e

    async def apply(self, writes: list[Write]) -> None:
        k = self.keys
        pipe = self._r.pipeline(transaction=False)
        for w in writes:
            v = None if w.value is None else w.value if type(w.value) is bytes else orjson.dumps(w.value)
            if w.kind == "conn":
                if v is None and w.sub:
                    # the <p>:connected member goes when the fleet is listed (another node may have added it)
                    await self._release(keys=[k.owner(w.cid), k.conn(w.cid)], args=[w.sub], client=pipe)
                elif v is None:
                    pipe.delete(k.conn(w.cid), k.owner(w.cid))
                    pipe.srem(k.connected(), w.cid)
                else:
                    pipe.set(k.conn(w.cid), v)
                    pipe.sadd(k.connected(), w.cid)
            elif w.kind == "boot":
                pipe.delete(k.boot(w.cid)) if v is None else pipe.set(k.boot(w.cid), v)
            elif w.kind == "status":
                pipe.hdel(k.status(w.cid), w.sub) if v is None else pipe.hset(k.status(w.cid), w.sub, v)
            elif w.kind == "tx":
                key = k.translation(w.cid, w.sub)
                pipe.delete(key) if v is None else pipe.set(key, v)
            elif w.kind == "cred":
                pipe.delete(k.cred(w.cid), k.credproof(w.cid)) if v is None else pipe.set(k.cred(w.cid), v)
            elif w.kind == "upcred":
                key = k.upcred(w.cid, w.sub)
                pipe.delete(key) if v is None else pipe.set(key, v)
            elif w.kind == "site":
                pipe.hdel(k.site(w.cid), w.sub) if v is None else pipe.hset(k.site(w.cid), w.sub, v)
            elif w.kind == "ride":
                pipe.hdel(k.ride(w.cid), w.sub) if v is None else pipe.hset(k.ride(w.cid), w.sub, v)
            elif w.kind == "rideauth":
                pipe.hdel(k.ride_auth(w.cid), w.sub) if v is None else pipe.hset(k.ride_auth(w.cid), w.sub, v)
            elif w.kind == "route":
                if v is None:
                    pipe.delete(k.route(w.cid))
                    pipe.srem(k.routes(), w.cid)
                else:
                    pipe.set(k.route(w.cid), v)
                    pipe.sadd(k.routes(), w.cid)
        try:
            await pipe.execute()
        except (RedisError, OSError) as e:
            raise StoreUnavailable(str(e)) from e

    async def _get(self, key: str) -> dict[str, Any] | None:
        (raw,) = await self._co(lambda p: p.get(key))
        return _loads(raw)

    async def get_connection(self, cid: str) -> dict[str, Any] | None:
        return await self._get(self.keys.conn(cid))

    async def list_connections(self) -> dict[str, dict[str, Any]]:
        try:
            ids = sorted(
                m.decode() if isinstance(m, bytes) else m for m in await self._r.smembers(self.keys.connected())
            )
            if not ids:
                return {}
            pipe = self._r.pipeline(transaction=False)
            for cid in ids:
                pipe.exists(self.keys.owner(cid))
                pipe.get(self.keys.conn(cid))
            got = await pipe.execute()
            out: dict[str, dict[str, Any]] = {}
            stale: list[str] = []
            for i, cid in enumerate(ids):
                owned, raw = got[2 * i], got[2 * i + 1]
                v = _loads(raw)
                if not owned:
                    stale.append(cid)
                elif v is not None:
                    out[cid] = v
            if stale:  # chargers of dead nodes (their owner keys expired): forget them
                pipe = self._r.pipeline(transaction=False)
                for cid in stale:
                    await self._prune(keys=[self.keys.owner(cid), self.keys.conn(cid)], client=pipe)
                pipe.srem(self.keys.connected(), *stale)
                await pipe.execute()
        except (RedisError, OSError) as e:
            raise StoreUnavailable(str(e)) from e
        return out

    async def get_boot(self, cid: str) -> dict[str, Any] | None:
        return await self._get(self.keys.boot(cid))

    async def get_statuses(self, cid: str) -> dict[str, dict[str, Any]]:
        return await self._hash(self.keys.status(cid))

    async def _hash(self, key: str) -> dict[str, dict[str, Any]]:
        try:
            raw = await self._r.hgetall(key)
        except (RedisError, OSError) as e:
            raise StoreUnavailable(str(e)) from e
        out: dict[str, dict[str, Any]] = {}
        for f, v in raw.items():
            d = _loads(v)
            if d is not None:
                out[f.decode() if isinstance(f, bytes) else str(f)] = d
        return out

    async def get_translation_state(self, cid: str, backend: str) -> dict[str, Any] | None:
        return await self._get(self.keys.translation(cid, backend))

    async def get_site(self, site: str) -> dict[str, dict[str, Any]]:
        return await self._hash(self.keys.site(site))

    async def get_ride(self, cid: str) -> dict[str, dict[str, Any]]:
        return await self._hash(self.keys.ride(cid))

    async def get_ride_auth(self, backend: str) -> dict[str, dict[str, Any]]:
        return await self._hash(self.keys.ride_auth(backend))

    async def get_route_override(self, cid: str) -> dict[str, Any] | None:
        return await self._get(self.keys.route(cid))

    async def list_route_overrides(self) -> dict[str, dict[str, Any]]:
        try:
            ids = sorted(_text(m) or "" for m in await self._r.smembers(self.keys.routes()))
            raws = await self._r.mget([self.keys.route(cid) for cid in ids]) if ids else []
        except (RedisError, OSError) as e:
            raise StoreUnavailable(str(e)) from e
        out: dict[str, dict[str, Any]] = {}
        for cid, raw in zip(ids, raws, strict=True):
            v = _loads(raw)
            if v is not None:
                out[cid] = v
        return out

    async def get_password_hash(self, cid: str) -> str | None:
        v = await self._get(self.keys.cred(cid))
        h = v.get("hash") if v else None
        return h if isinstance(h, str) else None

    async def get_password_hash_and_proof(self, cid: str, proof_ttl_s: float) -> tuple[str | None, bytes | None]:
        cred, credproof, px = self.keys.cred(cid), self.keys.credproof(cid), _ms(proof_ttl_s)
        raw, proof = await self._co(lambda p: p.get(cred), lambda p: p.getex(credproof, px=px))
        v = _loads(raw)
        h = v.get("hash") if v else None
        return (h if isinstance(h, str) else None), (proof if isinstance(proof, bytes) else None)

    async def put_password_proof(self, cid: str, proof: bytes, ttl_s: float) -> None:
        try:
            await self._r.set(self.keys.credproof(cid), proof, px=_ms(ttl_s))
        except (RedisError, OSError) as e:
            raise StoreUnavailable(str(e)) from e

    async def get_upstream_password(self, cid: str, backend: str) -> str | None:
        v = await self._get(self.keys.upcred(cid, backend))
        pw = v.get("password") if v else None
        return pw if isinstance(pw, str) else None

    async def claim_owner(self, cid: str, node: str, ttl_s: float) -> str | None:
        key, px = self.keys.owner(cid), _ms(ttl_s)
        (prev,) = await self._co(lambda p: p.set(key, node, px=px, get=True))
        return _text(prev if isinstance(prev, bytes | str) else None)

    async def refresh_owners(self, node: str, cids: Collection[str], ttl_s: float) -> list[str]:
        ids = list(cids)
        if not ids:
            return []
        ms = _ms(ttl_s)
        lost: list[str] = []
        for at in range(0, len(ids), _REFRESH_CHUNK):
            part = ids[at : at + _REFRESH_CHUNK]
            pipe = self._r.pipeline(transaction=False)
            for cid in part:
                await self._refresh(keys=[self.keys.owner(cid)], args=[node, ms], client=pipe)
            pipe.sadd(self.keys.connected(), *part)
            try:
                got = await pipe.execute()
            except (RedisError, OSError) as e:
                raise StoreUnavailable(str(e)) from e
            lost.extend(cid for cid, ok in zip(part, got, strict=False) if not ok)
        return lost

    async def get_owner(self, cid: str) -> str | None:
        key = self.keys.owner(cid)
        (owner,) = await self._co(lambda p: p.get(key))
        return _text(owner)

    async def publish(self, node: str, message: bytes) -> int:
        try:
            return int(await self._r.publish(self.keys.node_channel(node), message))
        except (RedisError, OSError) as e:
            raise StoreUnavailable(str(e)) from e

    async def subscribe(self, node: str) -> Subscription:
        ps = self._r.pubsub()
        try:
            await ps.subscribe(self.keys.node_channel(node))
            async with asyncio.timeout(5):
                while True:  # wait for the confirmation: messages published from now on reach us
                    msg = await ps.get_message(timeout=1.0)
                    if msg is not None and msg.get("type") == "subscribe":
                        break
        except (RedisError, OSError, TimeoutError) as e:
            await ps.aclose()  # type: ignore[no-untyped-call]
            raise StoreUnavailable(str(e) or "subscribe timed out") from e
        return _RedisSubscription(ps)

    def outbox(self) -> RedisOutbox:
        return self._outbox

    def compliance(self) -> RedisCompliance:
        return self._compliance

    def lease(self, key: str, holder: str, ttl_s: float) -> RedisLease:
        return RedisLease(self, key, holder, ttl_s)

    async def add_to_stream(self, key: str, events: Sequence[bytes], max_len: int) -> None:
        pipe = self._r.pipeline(transaction=False)
        for event in events:
            pipe.xadd(key, {"event": event}, maxlen=max_len, approximate=True)
        try:
            await pipe.execute()
        except (RedisError, OSError) as e:
            raise StoreUnavailable(str(e)) from e

    async def close(self) -> None:
        await self._co.close()
        await self._r.aclose()


class RedisLease:
    """A key holding the holder's node id with a TTL: taken with SET NX PX, extended by its holder
    (compare-and-expire), released by its holder (compare-and-delete)."""

    shared = True

    def __init__(self, store: RedisStore, key: str, holder: str, ttl_s: float) -> None:
        self._store = store
        self.key = key
        self.holder = holder
        self.ttl_ms = int(ttl_s * 1000)

    async def hold(self) -> bool:
        try:
            return int(await self._store._hold(keys=[self.key], args=[self.holder, self.ttl_ms])) == 1
        except (RedisError, OSError) as e:
            raise StoreUnavailable(str(e)) from e

    async def release(self) -> None:
        try:
            await self._store._lease_release(keys=[self.key], args=[self.holder])
        except (RedisError, OSError) as e:
            raise StoreUnavailable(str(e)) from e


class _RedisSubscription:
    def __init__(self, pubsub: PubSub) -> None:
        self._ps = pubsub

    async def get(self, timeout: float) -> bytes | None:
        try:
            msg = await self._ps.get_message(ignore_subscribe_messages=True, timeout=timeout)
        except (RedisError, OSError) as e:
            raise StoreUnavailable(str(e)) from e
        if msg is None or msg.get("type") != "message":
            return None
        data = msg.get("data")
        return data if isinstance(data, bytes) else str(data).encode()

    async def close(self) -> None:
        await self._ps.aclose()  # type: ignore[no-untyped-call]


def _ms(seconds: float) -> int:
    return max(1, int(seconds * 1000))


def _text(v: bytes | str | None) -> str | None:
    if v is None:
        return None
    return v.decode() if isinstance(v, bytes) else str(v)
