"""Outboxes in Redis Streams (:class:`gateway.store.outbox.Outbox` for the Redis store): one Lua call per append
(entries plus trimming), XRANGE to read, a Lua call to acknowledge, atomic moves of spool entries.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from typing import Any

import orjson
from redis.exceptions import RedisError

from gateway.store.base import StoreUnavailable
from gateway.store.outbox import ENTRY_SEP, Batch, Entry, Item, Items, Packed, SpoolEntry

__all__ = ["RedisOutbox"]

# One script for every append (it takes several streams; the gateway sends one per call, the calls of one event-loop
# turn pipelined; a down mirror's copies of every charger go to a spool instead, see _SPOOL_APPEND). KEYS: per
# stream, the stream and its meta hash (``<stream>:meta``: stream names end in a backend or tap name, which cannot
# hold ``:``). ARGV[1]: per stream, "mode max_len min_ms count;" (min_ms: the oldest allowed entry time, 0: no age
# bound); ARGV[1 + k]: the entries of the k-th stream in ONE argument, separated by 0x1E (a control character: it
# cannot occur in JSON text nor in a mirror record). Few arguments matter: redis-py packs each in Python (~1.4 us
# each, measured), so a call carries three per stream (two keys, one blob) however many entries they hold.
#
# * mode "e" (tap events): one stream entry ``d`` per item, split with a plain string.find (a pattern match per
#   byte cost Redis 1.6x the CPU, measured), trimmed by XTRIM MAXLEN / MINID.
# * mode "p" (mirror copies, :class:`Packed`): ONE stream entry ``n`` (count), ``b`` (the packed copies) for the
#   whole batch: Redis does one XADD per flush instead of one per copy (a down mirror's copies cost Redis 2.4 us
#   each instead of 6, 9.5 with the pattern match; measured; on a small host that is CPU taken from the gateway).
#   Bounds count copies, not entries: the meta hash keeps ``total`` (copies in the stream's entries) and ``skip``
#   (copies at the front of the oldest entry already delivered or trimmed); trimming by length advances ``skip``
#   (dropping the oldest entry once all of it is skipped), trimming by age drops whole entries whose id is older
#   than the bound (an entry's time is when its batch was written, up to one flush period after its oldest copy).
#
# The key of a (charger, mirror) stream carries the charger's hash tag, and so does its meta key; a call for several
# chargers spans Redis Cluster slots: fine for the standalone and Sentinel deployments the store supports; a
# Cluster store would group them by slot first.
_LUA_HEAD = """
local function head(key)
  local h = redis.call('XRANGE', key, '-', '+', 'COUNT', 1)[1]
  if not h then return nil, 0 end
  local f, n = h[2], 1
  for j = 1, #f, 2 do
    if f[j] == 'n' then n = tonumber(f[j + 1]) end
  end
  return h[1], n
end

local function meta_of(key, meta)
  local m = redis.call('HMGET', meta, 'total', 'skip')
  if not m[1] then return redis.call('XLEN', key), 0 end  -- entries written one per copy (older gateways)
  return tonumber(m[1]), tonumber(m[2] or '0')
end

-- A packed batch (mode "p") onto one stream, then the bounds; returns the copies trimmed. ``id`` is the new entry's
-- id: '*' (now), or an explicit one (the time of a spool entry being moved, see _MOVE; when the stream already
-- holds a later id, now).
local function append_packed(key, meta, blob, count, max_len, min_ms, id)
  local total, skip = meta_of(key, meta)
  if count > 0 then
    local added = id ~= '*' and redis.pcall('XADD', key, id, 'n', count, 'b', blob)
    if not added or type(added) == 'table' then
      redis.call('XADD', key, '*', 'n', count, 'b', blob)
    end
    total = total + count
  end
  local trimmed = 0
  while true do
    local hid, n = head(key)
    if not hid then
      total, skip = 0, 0
      break
    end
    if min_ms > 0 and tonumber(string.match(hid, '^(%d+)')) < min_ms then
      trimmed = trimmed + n - skip
      total, skip = total - n, 0
      redis.call('XDEL', key, hid)
    elseif total - skip > max_len then
      local drop = math.min(total - skip - max_len, n - skip)
      trimmed, skip = trimmed + drop, skip + drop
      if skip >= n then
        total, skip = total - n, 0
        redis.call('XDEL', key, hid)
      end
    else
      break
    end
  end
  redis.call('HSET', meta, 'total', total, 'skip', skip)
  return trimmed
end
"""

_APPEND_MANY = (
    _LUA_HEAD
    + """
local out, k = {}, 0
for mode, max_s, min_s, count_s in string.gmatch(ARGV[1], '(%a) (%d+) (%d+) (%d+);') do
  k = k + 1
  local key, meta, blob = KEYS[2 * k - 1], KEYS[2 * k], ARGV[k + 1]
  local max_len, min_ms, count = tonumber(max_s), tonumber(min_s), tonumber(count_s)
  if mode == 'e' then
    local before = redis.call('XLEN', key)
    local s, pos, n = blob, 1, 0
    while pos <= #s do
      local e = string.find(s, '\\30', pos, true) or (#s + 1)
      if e > pos then
        redis.call('XADD', key, '*', 'd', string.sub(s, pos, e - 1))
        n = n + 1
      end
      pos = e + 1
    end
    redis.call('XTRIM', key, 'MAXLEN', max_len)
    if min_ms > 0 then redis.call('XTRIM', key, 'MINID', min_ms .. '-0') end
    out[k] = before + n - redis.call('XLEN', key)
  else
    out[k] = append_packed(key, meta, blob, count, max_len, min_ms, '*')
  end
end
return table.concat(out, ',')  -- one bulk reply: an array costs redis-py a readline per element
"""
)

# Move the oldest entry of a spool (see gateway/fanout/spool.py: a down mirror's copies of every charger, one entry per
# write) into the per-charger streams, atomically: KEYS[1], KEYS[2]: the spool and its meta hash; then per charger
# its stream and meta. ARGV[1]: the spool entry's id and ARGV[2] the ``skip`` the caller read with it (when either
# changed meanwhile, another gateway moved or trimmed it: nothing is done and the reply is nil, the caller reads
# again); ARGV[3]: per charger "max_len min_ms count;", ARGV[3 + k] its copies. The copies keep the spool entry's
# time (their age bound runs from when they were spooled). Replies the trimmed counts, comma-joined, after "m".
_MOVE = (
    _LUA_HEAD
    + """
local spool, smeta = KEYS[1], KEYS[2]
local id, n = head(spool)
if id ~= ARGV[1] then return false end
local total, skip = meta_of(spool, smeta)
if skip ~= tonumber(ARGV[2]) then return false end
local at = string.match(id, '^(%d+)') .. '-0'
local out, k = {}, 0
for max_s, min_s, count_s in string.gmatch(ARGV[3], '(%d+) (%d+) (%d+);') do
  k = k + 1
  out[k] = append_packed(KEYS[2 * k + 1], KEYS[2 * k + 2], ARGV[k + 3], tonumber(count_s), tonumber(max_s),
    tonumber(min_s), at)
end
redis.call('XDEL', spool, id)
total = total - n
if total <= 0 then
  redis.call('DEL', smeta)
else
  redis.call('HSET', smeta, 'total', total, 'skip', 0)
end
return 'm' .. table.concat(out, ',')
"""
)

# Acknowledge delivered copies: ARGV = ids. ``<entry id>/<index>`` is a copy inside a packed entry: the oldest
# entry's ``skip`` moves past it, and the entry goes once all of it is delivered (an id that is no longer the oldest
# entry was trimmed meanwhile: nothing to do). A plain entry id is deleted (and counted off ``total`` if the stream
# has a meta hash).
_ACK = (
    _LUA_HEAD
    + """
local key, meta = KEYS[1], KEYS[2]
for a = 1, #ARGV do
  local rid, idx = string.match(ARGV[a], '^([^/]+)/(%d+)$')
  if rid then
    local id, n = head(key)
    if id == rid then
      local total, skip = meta_of(key, meta)
      skip = math.max(skip, tonumber(idx) + 1)
      if skip >= n then
        total, skip = total - n, 0
        redis.call('XDEL', key, id)
      end
      redis.call('HSET', meta, 'total', total, 'skip', skip)
    end
  elseif redis.call('XDEL', key, ARGV[a]) > 0 and redis.call('EXISTS', meta) == 1 then
    redis.call('HINCRBY', meta, 'total', -1)
  end
end
return 0
"""
)


# One write to a spool: KEYS: the spool, its meta hash, the registry set; ARGV: max_len, min_ms, count, the packed
# copies. One script call (no pipeline: redis-py checks a pipeline's scripts with SCRIPT EXISTS every time).
_SPOOL_APPEND = (
    _LUA_HEAD
    + """
local trimmed = append_packed(KEYS[1], KEYS[2], ARGV[4], tonumber(ARGV[3]), tonumber(ARGV[1]), tonumber(ARGV[2]), '*')
redis.call('SADD', KEYS[3], KEYS[1])
return trimmed
"""
)

# Take a spool out of the registry set if it holds nothing: KEYS[1] the set, KEYS[2] the spool; ARGV[1] its name.
_FORGET = """
if redis.call('XLEN', KEYS[2]) == 0 then
  redis.call('SREM', KEYS[1], ARGV[1])
end
return 0
"""


def _min_ms(max_age_s: float) -> int:
    """The age bound as the oldest allowed entry time, in ms (0: no age bound)."""
    return int((time.time() - max_age_s) * 1000) if max_age_s > 0 else 0


def _meta(stream: str) -> str:
    return f"{stream}:meta"


def _decode(v: Any) -> str:
    return v.decode() if isinstance(v, bytes) else str(v)


class RedisOutbox:
    """Redis Streams: one Lua call per append (entries plus trimming), XRANGE to read, a Lua call to acknowledge.

    Mirror copies (:class:`Packed`) are stored one stream entry per batch (see ``_APPEND_MANY``); :meth:`read` hands
    them out one :class:`Entry` per copy (id ``<entry id>/<index>``), so that callers see the same contract as for
    single entries and as :class:`MemoryOutbox`.

    Appends are coalesced: the appends of every stream made in one event-loop turn (the feeds of many chargers
    flushing at the same tick) go out as pipelines of up to :attr:`PIPELINE` script calls, one round trip each,
    instead of one round trip per stream. Each caller still awaits its own result, so the order of one stream's
    appends is the order of its caller's awaits.
    """

    PIPELINE = 100

    def __init__(self, client: Any) -> None:
        self._r = client
        # One command per append, however many copies it holds (redis-py packs every pipelined command in Python:
        # one XADD per copy cost ~15 us of gateway CPU each, measured).
        self._append_many = client.register_script(_APPEND_MANY)
        self._ack = client.register_script(_ACK)
        self._move = client.register_script(_MOVE)
        self._forget = client.register_script(_FORGET)
        self._spool_append = client.register_script(_SPOOL_APPEND)
        self._pending: list[tuple[str, tuple[str, bytes], asyncio.Future[int]]] = []
        self._flusher: asyncio.Task[None] | None = None

    async def append(self, stream: str, items: Items, max_len: int, max_age_s: float) -> int:
        return await self._queue(stream, items, max_len, max_age_s)

    @staticmethod
    def _args(items: Items, max_len: int, max_age_s: float) -> tuple[str, bytes]:
        """(this stream's part of the header, its entries)"""
        min_ms = _min_ms(max_age_s)
        if isinstance(items, Packed):
            return f"p {max_len} {min_ms} {items.count};", items.blob
        blob = ENTRY_SEP.join(item if type(item) is bytes else orjson.dumps(item) for item in items)
        return f"e {max_len} {min_ms} {len(items)};", blob

    def _queue(self, stream: str, items: Items, max_len: int, max_age_s: float) -> asyncio.Future[int]:
        args = self._args(items, max_len, max_age_s)
        loop = asyncio.get_running_loop()
        done: asyncio.Future[int] = loop.create_future()
        self._pending.append((stream, args, done))
        if self._flusher is None or self._flusher.done():
            self._flusher = loop.create_task(self._send_pending(), name="outbox-append")
        return done

    async def _send_pending(self) -> None:
        while self._pending:
            batch, self._pending = self._pending[: self.PIPELINE], self._pending[self.PIPELINE :]
            pipe = self._r.pipeline(transaction=False)
            for stream, args, _ in batch:
                # queues it in the pipeline
                await self._append_many(keys=[stream, _meta(stream)], args=list(args), client=pipe)
            try:
                results = await pipe.execute(raise_on_error=False)
            except Exception as e:  # RedisError, OSError, or anything else: every caller of the batch must hear
                results = [e] * len(batch)
            for (_, _, done), result in zip(batch, results, strict=True):
                if done.done():
                    continue  # the caller went away (cancelled): the entries are written all the same
                if isinstance(result, Exception):
                    done.set_exception(StoreUnavailable(str(result)))
                else:
                    done.set_result(int(result))

    async def read(self, stream: str, count: int) -> list[Entry]:
        try:
            pipe = self._r.pipeline(transaction=True)  # the oldest entries and how much of the first is done
            pipe.xrange(stream, count=count)
            pipe.hget(_meta(stream), "skip")
            rows, skip_raw = await pipe.execute()
        except (RedisError, OSError) as e:
            raise StoreUnavailable(str(e)) from e
        skip = int(skip_raw or 0)
        out: list[Entry] = []
        for row, (rid, fields) in enumerate(rows):
            rid_s = _decode(rid)
            at = int(rid_s.split("-")[0]) / 1000
            packed = fields.get(b"b")
            if packed is not None:
                copies = packed.split(ENTRY_SEP)
                for idx in range(skip if row == 0 else 0, len(copies)):
                    out.append(Entry(f"{rid_s}/{idx}", copies[idx], at))
            else:
                raw = fields.get(b"d")
                data: Item = {}
                if isinstance(raw, bytes) and not raw.startswith(b"{"):
                    data = raw
                elif raw is not None:
                    loaded = orjson.loads(raw)
                    data = loaded if isinstance(loaded, dict) else {}
                out.append(Entry(rid_s, data, at))
            if len(out) >= count:
                break
        return out[:count]

    async def ack(self, stream: str, ids: list[str]) -> None:
        if not ids:
            return
        try:
            await self._ack(keys=[stream, _meta(stream)], args=ids)
        except (RedisError, OSError) as e:
            raise StoreUnavailable(str(e)) from e

    async def spool_append(self, spool: str, packed: Packed, max_len: int, max_age_s: float, registry: str) -> int:
        min_ms = _min_ms(max_age_s)
        try:
            return int(
                await self._spool_append(
                    keys=[spool, _meta(spool), registry], args=[max_len, min_ms, packed.count, packed.blob]
                )
            )
        except (RedisError, OSError) as e:
            raise StoreUnavailable(str(e)) from e

    async def spools(self, registry: str, prefix: str) -> list[str]:
        try:
            members = await self._r.smembers(registry)
        except (RedisError, OSError) as e:
            raise StoreUnavailable(str(e)) from e
        return sorted(name for name in map(_decode, members) if name.startswith(prefix))

    async def spool_forget(self, registry: str, spool: str) -> None:
        try:
            await self._forget(keys=[registry, spool], args=[spool])
        except (RedisError, OSError) as e:
            raise StoreUnavailable(str(e)) from e

    async def spool_head(self, spool: str) -> SpoolEntry | None:
        try:
            pipe = self._r.pipeline(transaction=True)
            pipe.xrange(spool, count=1)
            pipe.hget(_meta(spool), "skip")
            rows, skip_raw = await pipe.execute()
        except (RedisError, OSError) as e:
            raise StoreUnavailable(str(e)) from e
        if not rows:
            return None
        rid, fields = rows[0]
        rid_s = _decode(rid)
        blob = fields.get(b"b", b"")
        count = int(fields.get(b"n", 0))
        return SpoolEntry(rid_s, int(rid_s.split("-")[0]) / 1000, int(skip_raw or 0), Packed(blob, count))

    async def spool_move(self, spool: str, entry: SpoolEntry, batches: Sequence[Batch]) -> list[int] | None:
        keys = [spool, _meta(spool)]
        header: list[str] = []
        blobs: list[bytes] = []
        for stream, items, max_len, max_age_s in batches:
            assert isinstance(items, Packed)
            keys += (stream, _meta(stream))
            min_ms = _min_ms(max_age_s)
            header.append(f"{max_len} {min_ms} {items.count};")
            blobs.append(items.blob)
        try:
            result = await self._move(keys=keys, args=[entry.id, entry.skip, "".join(header), *blobs])
        except (RedisError, OSError) as e:
            raise StoreUnavailable(str(e)) from e
        if not result:
            return None
        body = result[1:]
        return [int(x) for x in body.split(b",")] if body else []

    async def stats(self, stream: str) -> tuple[int, float | None]:
        try:
            pipe = self._r.pipeline(transaction=True)
            pipe.xlen(stream)
            pipe.xrange(stream, count=1)
            pipe.hmget(_meta(stream), "total", "skip")
            entries, first, (total, skip) = await pipe.execute()
        except (RedisError, OSError) as e:
            raise StoreUnavailable(str(e)) from e
        depth = int(entries) if total is None else max(0, int(total) - int(skip or 0))
        if not first:
            return 0, None
        rid_s = _decode(first[0][0])
        return depth, max(0.0, time.time() - int(rid_s.split("-")[0]) / 1000)

    async def streams(self, prefix: str) -> list[str]:
        out: list[str] = []
        try:
            async for key in self._r.scan_iter(
                match=prefix.replace("{", "\\{").replace("}", "\\}") + "*", count=1000, _type="stream"
            ):
                out.append(_decode(key))
        except (RedisError, OSError) as e:
            raise StoreUnavailable(str(e)) from e
        return sorted(out)
