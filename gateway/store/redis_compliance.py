"""The compliance counters on Redis (keys: gateway/store/keys.py, ``<p>:compliance:…``)."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping

import orjson
import redis.asyncio as aioredis
from redis.exceptions import RedisError

from gateway.store.base import StoreUnavailable
from gateway.store.compliance import ALWAYS, OVERFLOW, ModelCounts, ModelKey, ModelReport
from gateway.store.keys import Keys

__all__ = ["RedisCompliance"]

#: KEYS[1] a model's counters; ARGV max counters, the overflow counter, then name, n pairs: a counter the hash does
#: not have yet is added only while it holds fewer than max (the ALWAYS ones whatever), else n goes to the overflow
_ADD = """
local max = tonumber(ARGV[1])
local size = redis.call('HLEN', KEYS[1])
for i = 3, #ARGV, 3 do
  local name, n, always = ARGV[i], ARGV[i + 1], ARGV[i + 2]
  if always == '1' or redis.call('HEXISTS', KEYS[1], name) == 1 then
    redis.call('HINCRBY', KEYS[1], name, n)
  elseif size < max then
    redis.call('HINCRBY', KEYS[1], name, n)
    size = size + 1
  else
    redis.call('HINCRBY', KEYS[1], ARGV[2], n)
  end
end
return size
"""


def model_id(model: ModelKey) -> str:
    return hashlib.sha256(orjson.dumps(list(model))).hexdigest()[:16]


class RedisCompliance:
    def __init__(self, client: aioredis.Redis, keys: Keys) -> None:
        self._r = client
        self.keys = keys
        self._add = client.register_script(_ADD)

    async def add(self, batch: Mapping[ModelKey, ModelCounts], max_fields: int) -> None:
        k = self.keys
        pipe = self._r.pipeline(transaction=False)
        for model, delta in batch.items():
            mid = model_id(model)
            pipe.hset(k.compliance_models(), mid, orjson.dumps(list(model)))
            if delta.chargers:
                pipe.sadd(k.compliance_chargers(mid), *sorted(delta.chargers))
            if delta.counts:
                args: list[str | int] = [max_fields, OVERFLOW]
                for name, n in delta.counts.items():
                    args += [name, n, "1" if name in ALWAYS else "0"]
                await self._add(keys=[k.compliance_counts(mid)], args=args, client=pipe)
        try:
            await pipe.execute()
        except (RedisError, OSError) as e:
            raise StoreUnavailable(str(e)) from e

    async def read(self) -> dict[ModelKey, ModelReport]:
        k = self.keys
        try:
            models = await self._r.hgetall(k.compliance_models())
            ids = sorted(_text(m) for m in models)
            pipe = self._r.pipeline(transaction=False)
            for mid in ids:
                pipe.scard(k.compliance_chargers(mid))
                pipe.hgetall(k.compliance_counts(mid))
            got = await pipe.execute() if ids else []
        except (RedisError, OSError) as e:
            raise StoreUnavailable(str(e)) from e
        names = {_text(m): v for m, v in models.items()}
        out: dict[ModelKey, ModelReport] = {}
        for i, mid in enumerate(ids):
            vendor, model, firmware = (str(x) for x in orjson.loads(names[mid]))
            counts = {_text(f): int(v) for f, v in got[2 * i + 1].items()}
            out[(vendor, model, firmware)] = ModelReport(int(got[2 * i]), counts)
        return out

    async def clear(self) -> None:
        k = self.keys
        try:
            ids = [_text(m) for m in await self._r.hkeys(k.compliance_models())]
            doomed = [k.compliance_models()] + [x for mid in ids for x in (k.compliance_chargers(mid),
                                                                            k.compliance_counts(mid))]  # fmt: skip
            await self._r.delete(*doomed)
        except (RedisError, OSError) as e:
            raise StoreUnavailable(str(e)) from e


def _text(v: bytes | str) -> str:
    return v.decode() if isinstance(v, bytes) else str(v)
