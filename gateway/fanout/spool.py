"""The spool: while a mirror is down, every charger's copies toward it, kept by this process as one stream.

While a mirror is down its feeds are parked and nobody should pay for its copies on the message path: they are
appended, four references each (the feed's ``tag`` with the charger id and its bounds, the action, the CALL frame,
the answer frame; for a one-mirror pass-through session the session appends them itself, without a call), to one
in-memory list per mirror, :attr:`Spool.copies`. A writer task writes that list to this process's spool stream
(``<p>:mirror-spool:<mirror>:<instance>``, :class:`gateway.store.keys.Keys`), as entries of at most
:data:`SPOOL_CHUNK` copies, as soon as that many wait (looked at every :data:`SPOOL_WRITE_S`) and at least every
:data:`SPOOL_MAX_WAIT_S`: what a crash, not a graceful stop, can lose of a down mirror's copies.

When the mirror is back (:class:`gateway.fanout.board.MirrorBoard` drains it), :meth:`Spool.take` stops the list
(new copies go to the feeds' own buffers again), what is left is written, and :meth:`Spool.move_all` moves every
spool of that mirror — this process's, and those that stopped or crashed processes left (a registry set lists them)
— entry by entry, the oldest entry of all first, each move one atomic store call, into the chargers' own outboxes.
Only then do the feeds deliver, so every charger's copies arrive in order, across restarts and replicas.

Record format: the tag (charger id, max_len, max_age_s, each followed by :data:`SEP`) then the outbox entry (action,
CALL, answer, joined by :data:`SEP`: see :mod:`gateway.fanout.mirror`); records joined by ``ENTRY_SEP``.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from typing import Any

from gateway.metrics import Metrics
from gateway.store.base import StoreUnavailable
from gateway.store.keys import Keys
from gateway.store.outbox import ENTRY_SEP, Batch, Outbox, Packed, SpoolEntry
from gateway.tasks import stop_task

__all__ = ["SEP", "SPOOL_CHUNK", "SPOOL_MAX_WAIT_S", "SPOOL_WRITE_S", "Spool", "pack_spool"]

#: while a mirror is down, the copies spooled in memory are written to the spool stream as soon as there are
#: SPOOL_CHUNK of them (looked at every SPOOL_WRITE_S), and at least every SPOOL_MAX_WAIT_S: what a crash, not a
#: graceful stop, can lose of them
SPOOL_WRITE_S = 0.1
SPOOL_MAX_WAIT_S = 1.0
#: at most this many copies per spool entry (about 0.5 kB each: a write's blob stays small enough to be built in
#: memory the allocator reuses; 2,500 copies in one blob cost 20x the time to join, page faults mostly, measured)
SPOOL_CHUNK = 500

#: the separator of a record's fields. 0x1F cannot occur in JSON text (a control character, outside strings as
#: inside), so frames are kept as received: no parsing and no JSON escaping while the mirror is away.
SEP = b"\x1f"


def pack_spool(flat: list[Any]) -> Packed:
    """Spooled copies (four items each: tag, action, CALL, answer) as spool records joined by ENTRY_SEP: the tag
    (charger id and bounds, ending in SEP) then the outbox entry (see :data:`SEP`); slice assignments and one join."""
    n = len(flat) // 4
    if not n:
        return Packed(b"", 0)
    parts: list[bytes] = [ENTRY_SEP] * (7 * n)
    parts[0::7] = flat[0::4]
    parts[1::7] = [a.encode() for a in flat[1::4]]
    parts[2::7] = parts[4::7] = [SEP] * n
    parts[3::7] = flat[2::4]
    parts[5::7] = flat[3::4]
    parts.pop()  # the last ENTRY_SEP
    return Packed(b"".join(parts), n)


class Spool:
    """One mirror's spool in this process. :meth:`open` when the mirror goes down; the board drains it."""

    def __init__(
        self,
        mirror: str,
        outbox: Outbox,
        keys: Keys,
        instance: str,
        metrics: Metrics,
        log: Any,
        bounds: Callable[[], tuple[int, float]],
    ) -> None:
        self.mirror = mirror
        self.outbox = outbox
        self.keys = keys
        self.key = keys.mirror_spool(mirror, instance)
        self.metrics = metrics
        self.log = log
        #: the room it needs when first written: every feed's outbox bound, the longest age (see Spool.bound)
        self._bounds = bounds
        #: the list feeds and sessions append to while the mirror is down (flat, four items per copy); None when
        #: the mirror is not being spooled
        self.copies: list[Any] | None = None
        #: copies written elsewhere first: those of feeds that closed while they could not flush, and what was
        #: left in the list when the drain took it
        self.late: list[Any] = []
        #: copies this process wrote to its spool stream and nobody moved yet, and the unix time of the oldest
        self.spooled = 0
        self.since: float | None = None
        self.bound: tuple[int, float] | None = None
        self.lock = asyncio.Lock()  # one write at a time: a failed one puts copies back in front of its list
        self._writer: asyncio.Task[None] | None = None
        self._store_down = False

    # ------------------------------------------------------------------ the list

    def open(self) -> list[Any]:
        """Start spooling (the mirror went down): the list to append to."""
        if self.copies is None:
            self.copies = []
        self._ensure_writer()
        return self.copies

    def take(self) -> None:
        """Stop spooling (the mirror is back): what the list holds goes after the late copies, to be written by the
        drain. Call under :attr:`lock` (no write in flight: it could put copies back into the list)."""
        if self.copies is not None:
            self.late.extend(self.copies)
            self.copies = None

    def adopt(self, copies: list[Any]) -> None:
        """Spool-format copies of a feed that closed while it could not write to its outbox: written with the
        rest, in order."""
        if not copies:
            return
        if self.copies is not None:
            self.copies += copies
        else:
            self.late.extend(copies)
            self._ensure_writer()

    def spooled_at(self, when: float) -> None:
        """A copy spooled at unix time ``when`` (the oldest wins)."""
        if self.since is None or when < self.since:
            self.since = when

    def depth(self) -> int:
        """Copies of this mirror not in any outbox yet, as far as this process knows."""
        return self.spooled + (len(self.copies or ()) + len(self.late)) // 4

    def age(self) -> float:
        return 0.0 if self.since is None else max(0.0, time.time() - self.since)

    def raise_bound(self, max_len: int, max_age_s: float) -> None:
        """A feed registered while the spool holds copies: make room for its bound too (never lowered)."""
        if self.bound is not None:
            self.bound = (max(self.bound[0], max_len), max(self.bound[1], max_age_s))

    def drained(self) -> None:
        """Every copy was moved into the outboxes."""
        self.spooled = 0
        self.since = None
        self.bound = None

    # ------------------------------------------------------------------ writing

    def _ensure_writer(self) -> None:
        if self._writer is None or self._writer.done():
            self._writer = asyncio.get_running_loop().create_task(
                self._write_loop(), name=f"spool-writer:{self.mirror}"
            )

    async def _write_loop(self) -> None:
        """Every SPOOL_WRITE_S, write the list if it holds SPOOL_CHUNK copies or its oldest is SPOOL_MAX_WAIT_S
        old: under load, small writes often; at a low rate, one store call a second, not ten."""
        loop = asyncio.get_running_loop()
        last = loop.time()
        while True:
            await asyncio.sleep(SPOOL_WRITE_S)
            copies, late = self.copies, self.late
            if copies is None and not late:
                return  # drained (the drain wrote the rest)
            now = loop.time()
            if now - last < SPOOL_MAX_WAIT_S and len(copies or ()) < 4 * SPOOL_CHUNK and not late:
                continue
            last = now
            try:
                if late:
                    await self.write(late)
                if copies:
                    await self.write(copies)
            except StoreUnavailable as e:
                self.store_failed(e)
            else:
                self.store_ok()

    def store_failed(self, e: Exception) -> None:
        self.metrics.store_errors.labels("outbox").inc()
        if not self._store_down:
            self._store_down = True
            self.log.error("mirror_spool_unavailable", mirror=self.mirror, error=str(e))

    def store_ok(self) -> None:
        if self._store_down:
            self._store_down = False
            self.log.info("mirror_spool_recovered", mirror=self.mirror)

    async def write(self, copies: list[Any]) -> None:
        """What ``copies`` holds, to this process's spool stream, one entry per SPOOL_CHUNK copies (bounded; on
        failure the copies not written go back in front of the list, bounded too, and StoreUnavailable is raised)."""
        async with self.lock:
            if not copies:
                return
            taken = copies[:]
            del copies[:]
            if self.since is None:  # appended since the last write at the latest
                self.since = time.time() - SPOOL_MAX_WAIT_S
            if self.bound is None:
                self.bound = self._bounds()
            max_len, max_age_s = self.bound
            registry = self.keys.mirror_spools()
            step = 4 * SPOOL_CHUNK
            for i in range(0, len(taken), step):
                packed = pack_spool(taken[i : i + step])
                try:
                    trimmed = await self.outbox.spool_append(self.key, packed, max_len, max_age_s, registry)
                except asyncio.CancelledError:
                    copies[0:0] = taken[i:]  # stopping: the caller writes what is left (twice at worst, never lost)
                    raise
                except StoreUnavailable:
                    copies[0:0] = taken[i:]
                    excess = len(copies) // 4 - max_len
                    if excess > 0:
                        del copies[: 4 * excess]
                        self.metrics.mirror_copies.labels(self.mirror, "trimmed").inc(excess)
                    raise
                self.spooled += packed.count - trimmed
                if trimmed:
                    self.metrics.mirror_copies.labels(self.mirror, "trimmed").inc(trimmed)

    # ------------------------------------------------------------------ moving

    async def move_all(self) -> None:
        """Every spool of this mirror, entry by entry, the oldest entry of all first, into the chargers' outboxes."""
        outbox, registry = self.outbox, self.keys.mirror_spools()
        keys = await outbox.spools(registry, self.keys.mirror_spool(self.mirror))
        heads = {}
        for key in keys:
            entry = await outbox.spool_head(key)
            if entry is None:
                await outbox.spool_forget(registry, key)
            else:
                heads[key] = entry
        misses = 0
        while heads:
            key = min(heads, key=lambda k: (heads[k].at, heads[k].id))
            entry = heads[key]
            result = await outbox.spool_move(key, entry, self.split(entry))
            if result is None:  # another process moved or trimmed it meanwhile: read again
                misses += 1
                if misses > 1000:
                    raise StoreUnavailable(f"spool {key} keeps changing")
            elif sum(result):
                self.metrics.mirror_copies.labels(self.mirror, "trimmed").inc(sum(result))
            nxt = await outbox.spool_head(key)
            if nxt is None:
                del heads[key]
                await outbox.spool_forget(registry, key)
            else:
                heads[key] = nxt

    def split(self, entry: SpoolEntry) -> list[Batch]:
        """A spool entry's copies, per charger (in order), with that charger's bounds."""
        groups: dict[bytes, list[bytes]] = {}
        bounds: dict[bytes, tuple[bytes, bytes]] = {}
        for record in entry.records():
            parts = record.split(SEP, 3)
            if len(parts) != 4:
                continue  # not a spool record: nothing to deliver
            cid, max_len, max_age, copy = parts
            groups.setdefault(cid, []).append(copy)
            bounds[cid] = (max_len, max_age)
        return [
            (
                self.keys.outbox(cid.decode(), self.mirror),
                Packed(ENTRY_SEP.join(copies), len(copies)),
                int(bounds[cid][0]),
                float(bounds[cid][1]),
            )
            for cid, copies in groups.items()
        ]

    async def close(self) -> None:
        """Stop the writer; what is still in memory is written to the spool stream (bounded), for whichever
        process sees the mirror back."""
        task, self._writer = self._writer, None
        await stop_task(task)
        for copies in (self.late, self.copies):
            if copies:
                with contextlib.suppress(StoreUnavailable, TimeoutError):
                    async with asyncio.timeout(2.0):
                        await self.write(copies)
