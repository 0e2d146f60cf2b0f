"""Redis store (redis.asyncio). Keys are documented in :mod:`gateway.store.keys`.

URLs: ``redis://host:port/db``, ``rediss://…`` (TLS), ``unix:///path``, and
``redis+sentinel://[:password@]host:port[,host:port…]/<service_name>[/db]`` for Sentinel.
Every failure to reach Redis becomes :class:`~gateway.store.base.StoreUnavailable`.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import unquote, urlsplit

import orjson
import redis.asyncio as aioredis
from redis.asyncio.sentinel import Sentinel
from redis.exceptions import RedisError

from gateway.store.base import StoreUnavailable, Write
from gateway.store.keys import Keys

__all__ = ["RedisStore"]

_TIMEOUTS: dict[str, Any] = {"socket_timeout": 2.0, "socket_connect_timeout": 2.0, "health_check_interval": 15}


def _loads(raw: bytes | str | None) -> dict[str, Any] | None:
    if raw is None:
        return None
    v = orjson.loads(raw)
    return v if isinstance(v, dict) else None


class RedisStore:
    """The production store: shared by every process and replica."""

    def __init__(self, client: aioredis.Redis, prefix: str = "ocppgw") -> None:
        self._r = client
        self.keys = Keys(prefix)

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
            client = sentinel.master_for(service, db=db, password=password)
            return cls(client, prefix)
        return cls(aioredis.from_url(url, **_TIMEOUTS), prefix)

    async def ping(self) -> None:
        try:
            await self._r.ping()
        except (RedisError, OSError) as e:
            raise StoreUnavailable(str(e)) from e

    async def apply(self, writes: list[Write]) -> None:
        k = self.keys
        pipe = self._r.pipeline(transaction=False)
        for w in writes:
            v = None if w.value is None else orjson.dumps(w.value)
            if w.kind == "conn":
                if v is None:
                    pipe.delete(k.conn(w.cid))
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
        try:
            await pipe.execute()
        except (RedisError, OSError) as e:
            raise StoreUnavailable(str(e)) from e

    async def _get(self, key: str) -> dict[str, Any] | None:
        try:
            return _loads(await self._r.get(key))
        except (RedisError, OSError) as e:
            raise StoreUnavailable(str(e)) from e

    async def get_connection(self, cid: str) -> dict[str, Any] | None:
        return await self._get(self.keys.conn(cid))

    async def list_connections(self) -> dict[str, dict[str, Any]]:
        try:
            ids = sorted(
                m.decode() if isinstance(m, bytes) else m for m in await self._r.smembers(self.keys.connected())
            )
            if not ids:
                return {}
            raws = await self._r.mget([self.keys.conn(cid) for cid in ids])
        except (RedisError, OSError) as e:
            raise StoreUnavailable(str(e)) from e
        out: dict[str, dict[str, Any]] = {}
        for cid, raw in zip(ids, raws, strict=True):
            v = _loads(raw)
            if v is not None:
                out[cid] = v
        return out

    async def get_boot(self, cid: str) -> dict[str, Any] | None:
        return await self._get(self.keys.boot(cid))

    async def get_statuses(self, cid: str) -> dict[str, dict[str, Any]]:
        try:
            raw = await self._r.hgetall(self.keys.status(cid))
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

    async def close(self) -> None:
        await self._r.aclose()
