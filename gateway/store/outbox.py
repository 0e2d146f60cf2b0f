"""Durable outboxes: ordered, bounded queues of copies waiting for a consumer (mirror backends, taps).

One outbox per stream name: ``<p>:{<charger id>}:outbox:<mirror>`` for a mirror (the charger's hash tag keeps it on
the charger's shard) and ``<p>:tap:<name>`` for a tap. With Redis an outbox is a Redis Stream: it survives a
gateway restart and is shared by every replica. The memory implementation keeps the same contract for one process.

Entries are JSON objects (taps) or opaque bytes (mirror copies: their frames as received, joined, so that keeping a
copy costs neither parsing nor JSON escaping; bytes that start with ``{`` are read back as JSON). Mirror copies come
in batches (:class:`Packed`): Redis stores a batch as ONE stream entry and a ``<stream>:meta`` hash says how much of
the oldest one is done (see ``_APPEND_MANY``); :meth:`Outbox.read` still hands out one :class:`Entry` per copy.

Spools (``<p>:mirror-spool:<mirror>:<process>``): packed batches of many chargers' copies, written while a mirror is
down, whose entries are later moved whole, atomically, into the chargers' outboxes (:meth:`Outbox.spool_move`,
``_MOVE``); a registry set lists the spools that may hold copies, so that any process finds the ones others left.

Bounds: every append trims the outbox to ``max_len`` entries (copies, for mirror batches) and drops entries older
than ``max_age_s``; since delivered entries are deleted on acknowledgement, everything trimmed was never delivered,
and :meth:`Outbox.append` returns how many so that the caller counts them (mirror copies, tap events).
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import orjson
from redis.exceptions import RedisError

from gateway.store.base import Store, StoreUnavailable

__all__ = [
    "ENTRY_SEP",
    "Batch",
    "Entry",
    "Item",
    "Items",
    "MemoryOutbox",
    "Outbox",
    "Packed",
    "RedisOutbox",
    "SpoolEntry",
    "open_outbox",
]


Item = dict[str, Any] | bytes


@dataclass(frozen=True, slots=True)
class Packed:
    """``count`` opaque entries already joined by :data:`ENTRY_SEP` into one bytes object (mirror copies: built in
    one join by the caller, sent to Redis as one argument without another copy)."""

    blob: bytes
    count: int

    def entries(self) -> list[bytes]:
        return self.blob.split(ENTRY_SEP) if self.count else []


Items = Sequence[Item] | Packed
Batch = tuple[str, Items, int, float]  # stream, items, max_len, max_age_s


@dataclass(frozen=True, slots=True)
class Entry:
    id: str
    data: Item
    at: float  # unix seconds when appended


@dataclass(frozen=True, slots=True)
class SpoolEntry:
    """The oldest entry of a spool (see :meth:`Outbox.spool_head`): one write of a down mirror's copies, of many
    chargers, as a packed batch; ``skip``: how many of its copies were trimmed already."""

    id: str
    at: float
    skip: int
    packed: Packed

    def records(self) -> list[bytes]:
        return self.packed.entries()[self.skip :]


class Outbox(Protocol):
    async def append(self, stream: str, items: Items, max_len: int, max_age_s: float) -> int:
        """Append in order; trim by length and age; return how many entries were trimmed unsent."""
        ...

    async def read(self, stream: str, count: int) -> list[Entry]:
        """The oldest ``count`` entries, oldest first (not removed)."""
        ...

    async def ack(self, stream: str, ids: list[str]) -> None:
        """Remove delivered entries."""
        ...

    async def stats(self, stream: str) -> tuple[int, float | None]:
        """(depth, age in seconds of the oldest entry or None when empty)."""
        ...

    async def streams(self, prefix: str) -> list[str]:
        """Stream names starting with ``prefix`` that hold entries (to resume delivery after a restart)."""
        ...

    # A spool is an outbox stream of packed batches (:meth:`append` with :class:`Packed`) whose entries are moved,
    # whole and atomically, into other streams: a down mirror's copies of every charger go to one spool per gateway
    # process, and into each charger's own outbox when the mirror is back (gateway/mirror.py).

    async def spool_append(self, spool: str, packed: Packed, max_len: int, max_age_s: float, registry: str) -> int:
        """:meth:`append` of one packed batch to a spool: one entry; bounds count copies; the copies trimmed. The
        spool's name goes into the set ``registry`` (see :meth:`spools`)."""
        ...

    async def spools(self, registry: str, prefix: str) -> list[str]:
        """The spools in ``registry`` whose name starts with ``prefix`` (they may hold copies)."""
        ...

    async def spool_forget(self, registry: str, spool: str) -> None:
        """Take ``spool`` out of ``registry`` if it is empty (atomically: a spool written meanwhile stays)."""
        ...

    async def spool_head(self, spool: str) -> SpoolEntry | None:
        """The oldest entry of ``spool`` (None: empty)."""
        ...

    async def spool_move(self, spool: str, entry: SpoolEntry, batches: Sequence[Batch]) -> list[int] | None:
        """Append ``batches`` (:class:`Packed` items), keeping ``entry``'s time, and remove ``entry`` from the spool,
        as one step; per batch the copies trimmed. None when ``entry`` is no longer the spool's oldest as read (moved
        or trimmed by someone else meanwhile): nothing was done."""
        ...


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
            q.append(Entry(f"{int(at * 1000)}-{self._seq}", item, at))
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


ENTRY_SEP = b"\x1e"

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

# Move the oldest entry of a spool (see gateway/mirror.py: a down mirror's copies of every charger, one entry per
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


def open_outbox(store: Store) -> Outbox:
    """The outbox that goes with a store: Redis Streams for the Redis store, in-process otherwise."""
    client = getattr(store, "_r", None)
    if client is not None:
        return RedisOutbox(client)
    return MemoryOutbox()
