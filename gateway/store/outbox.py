"""Durable outboxes: ordered, bounded queues of copies waiting for a consumer (mirror backends, taps).

One outbox per stream name: ``<p>:{<charger id>}:outbox:<mirror>`` for a mirror (the charger's hash tag keeps it on
the charger's shard) and ``<p>:tap:<name>`` for a tap. With Redis an outbox is a Redis Stream: it survives a
gateway restart and is shared by every replica. The memory implementation keeps the same contract for one process.

Entries are JSON objects (taps) or opaque bytes (mirror copies: their frames as received, joined, so that keeping a
copy costs neither parsing nor JSON escaping; bytes that start with ``{`` are read back as JSON).

Bounds: every append trims the stream to ``max_len`` entries and drops entries older than ``max_age_s``; since
delivered entries are deleted on acknowledgement, everything trimmed was never delivered, and :meth:`Outbox.append`
returns how many so that the caller counts them (``ocppgw_outbox_trimmed_total``).
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

__all__ = ["Batch", "Entry", "Item", "MemoryOutbox", "Outbox", "RedisOutbox", "open_outbox"]


Item = dict[str, Any] | bytes
Batch = tuple[str, Sequence[Item], int, float]  # stream, items, max_len, max_age_s


@dataclass(frozen=True, slots=True)
class Entry:
    id: str
    data: Item
    at: float  # unix seconds when appended


class Outbox(Protocol):
    async def append(self, stream: str, items: Sequence[Item], max_len: int, max_age_s: float) -> int:
        """Append in order; trim by length and age; return how many entries were trimmed unsent."""
        ...

    async def append_many(self, batches: Sequence[Batch]) -> list[int | BaseException]:
        """:meth:`append` for several streams at once: per batch, the trimmed count or the error."""
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


class MemoryOutbox:
    """Per-process outboxes (the memory store: lost on restart, as the rest of the memory store)."""

    def __init__(self) -> None:
        self._streams: dict[str, deque[Entry]] = {}
        self._seq = 0

    async def append(self, stream: str, items: Sequence[Item], max_len: int, max_age_s: float) -> int:
        q = self._streams.setdefault(stream, deque())
        now = time.time()
        for item in items:
            self._seq += 1
            q.append(Entry(f"{int(now * 1000)}-{self._seq}", item, now))
        trimmed = 0
        while len(q) > max_len or (q and max_age_s > 0 and now - q[0].at > max_age_s):
            q.popleft()
            trimmed += 1
        return trimmed

    async def append_many(self, batches: Sequence[Batch]) -> list[int | BaseException]:
        return [await self.append(*batch) for batch in batches]

    async def read(self, stream: str, count: int) -> list[Entry]:
        q = self._streams.get(stream)
        return list(itertools.islice(q, count)) if q else []

    async def ack(self, stream: str, ids: list[str]) -> None:
        q = self._streams.get(stream)
        if not q:
            return
        drop = set(ids)
        self._streams[stream] = deque(e for e in q if e.id not in drop)

    async def stats(self, stream: str) -> tuple[int, float | None]:
        q = self._streams.get(stream)
        if not q:
            return 0, None
        return len(q), max(0.0, time.time() - q[0].at)

    async def streams(self, prefix: str) -> list[str]:
        return sorted(s for s, q in self._streams.items() if q and s.startswith(prefix))


# ARGV: max_len, minid, then every entry in ONE argument, separated by 0x1E (a control character: it cannot occur in
# JSON text, nor in a mirror record), so that the gateway packs one argument per append however many entries it
# carries; the script splits them and XADDs each.
_APPEND = """
local before = redis.call('XLEN', KEYS[1])
local n = 0
for entry in string.gmatch(ARGV[3], '[^\\30]+') do
  redis.call('XADD', KEYS[1], '*', 'd', entry)
  n = n + 1
end
redis.call('XTRIM', KEYS[1], 'MAXLEN', ARGV[1])
if ARGV[2] ~= '0' then redis.call('XTRIM', KEYS[1], 'MINID', ARGV[2]) end
return before + n - redis.call('XLEN', KEYS[1])
"""
ENTRY_SEP = b"\x1e"

# The same for several streams in one call: ARGV[1 + 3(k-1) ..] = max_len, minid, entries of KEYS[k]. Used for the
# buffers a down mirror's feeds flush together (gateway/mirror.py): one command instead of one per charger. The
# keys belong to different chargers, hence to different Redis Cluster slots: fine for the standalone and Sentinel
# deployments the store supports; a Cluster store would group them by slot first.
_APPEND_MANY = """
local out = {}
for k = 1, #KEYS do
  local key, i = KEYS[k], 3 * (k - 1)
  local before = redis.call('XLEN', key)
  local n = 0
  for entry in string.gmatch(ARGV[i + 3], '[^\\30]+') do
    redis.call('XADD', key, '*', 'd', entry)
    n = n + 1
  end
  redis.call('XTRIM', key, 'MAXLEN', ARGV[i + 1])
  if ARGV[i + 2] ~= '0' then redis.call('XTRIM', key, 'MINID', ARGV[i + 2]) end
  out[k] = before + n - redis.call('XLEN', key)
end
return out
"""


class RedisOutbox:
    """Redis Streams: XADDs + XTRIM (MAXLEN and MINID) in one Lua call per append, XRANGE to read, XDEL to ack.

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
        self._append = client.register_script(_APPEND)
        self._append_many = client.register_script(_APPEND_MANY)
        self._pending: list[tuple[str, list[Any], asyncio.Future[int]]] = []
        self._flusher: asyncio.Task[None] | None = None

    async def append(self, stream: str, items: Sequence[Item], max_len: int, max_age_s: float) -> int:
        return await self._queue(stream, items, max_len, max_age_s)

    async def append_many(self, batches: Sequence[Batch]) -> list[int | BaseException]:
        """One script call per :attr:`PIPELINE` streams (see ``_APPEND_MANY``)."""
        out: list[int | BaseException] = []
        for i in range(0, len(batches), self.PIPELINE):
            chunk = batches[i : i + self.PIPELINE]
            args: list[Any] = []
            for _, items, max_len, max_age_s in chunk:
                args += self._args(items, max_len, max_age_s)
            try:
                result = await self._append_many(keys=[b[0] for b in chunk], args=args)
                out += [int(x) for x in result]
            except (RedisError, OSError) as e:
                out += [StoreUnavailable(str(e))] * len(chunk)
        return out

    @staticmethod
    def _args(items: Sequence[Item], max_len: int, max_age_s: float) -> list[Any]:
        minid = f"{int((time.time() - max_age_s) * 1000)}-0" if max_age_s > 0 else "0"
        return [max_len, minid, ENTRY_SEP.join(item if type(item) is bytes else orjson.dumps(item) for item in items)]

    def _queue(self, stream: str, items: Sequence[Item], max_len: int, max_age_s: float) -> asyncio.Future[int]:
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
                await self._append(keys=[stream], args=args, client=pipe)  # queues it in the pipeline
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
            rows = await self._r.xrange(stream, count=count)
        except (RedisError, OSError) as e:
            raise StoreUnavailable(str(e)) from e
        out = []
        for rid, fields in rows:
            rid_s = rid.decode() if isinstance(rid, bytes) else str(rid)
            raw = fields.get(b"d") or fields.get("d")
            data: Item = {}
            if isinstance(raw, bytes) and not raw.startswith(b"{"):
                data = raw
            elif raw is not None:
                loaded = orjson.loads(raw)
                data = loaded if isinstance(loaded, dict) else {}
            out.append(Entry(rid_s, data, int(rid_s.split("-")[0]) / 1000))
        return out

    async def ack(self, stream: str, ids: list[str]) -> None:
        if not ids:
            return
        try:
            await self._r.xdel(stream, *ids)
        except (RedisError, OSError) as e:
            raise StoreUnavailable(str(e)) from e

    async def stats(self, stream: str) -> tuple[int, float | None]:
        try:
            pipe = self._r.pipeline(transaction=False)
            pipe.xlen(stream)
            pipe.xrange(stream, count=1)
            depth, first = await pipe.execute()
        except (RedisError, OSError) as e:
            raise StoreUnavailable(str(e)) from e
        if not first:
            return int(depth), None
        rid = first[0][0]
        rid_s = rid.decode() if isinstance(rid, bytes) else str(rid)
        return int(depth), max(0.0, time.time() - int(rid_s.split("-")[0]) / 1000)

    async def streams(self, prefix: str) -> list[str]:
        out: list[str] = []
        try:
            async for key in self._r.scan_iter(
                match=prefix.replace("{", "\\{").replace("}", "\\}") + "*", count=1000, _type="stream"
            ):
                out.append(key.decode() if isinstance(key, bytes) else str(key))
        except (RedisError, OSError) as e:
            raise StoreUnavailable(str(e)) from e
        return sorted(out)


def open_outbox(store: Store) -> Outbox:
    """The outbox that goes with a store: Redis Streams for the Redis store, in-process otherwise."""
    client = getattr(store, "_r", None)
    if client is not None:
        return RedisOutbox(client)
    return MemoryOutbox()
