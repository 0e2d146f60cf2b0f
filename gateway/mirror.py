"""Mirror backends: a copy of every charger-initiated CALL, through a durable outbox, without ever slowing the charger.

One :class:`MirrorFeed` per (connected charger, mirror backend). The session hands it each charger CALL together
with the primary's answer (:meth:`MirrorFeed.offer`, synchronous, no I/O: the copy is buffered in memory). The
feed's one task appends buffered copies to the outbox (a Redis Stream with the Redis store, so copies survive a
restart), and delivers the outbox in order, one outstanding CALL at a time, whenever the mirror is reachable:

* Order and once-only: an entry is removed from the outbox only after the mirror answered it (CALLRESULT or
  CALLERROR); if the link drops first, the same entry is sent again on the next connection, before anything newer.
  (A mirror can therefore see one entry twice when its answer was lost with the link; never out of order.)
* Boot first: on every new connection to the mirror, if the next entry is not a BootNotification, the charger's
  last BootNotification (from the store) is sent first, so the mirror knows the charger before anything else.
* Shadow comparison: the mirror's answer is compared with the primary's on the fields that carry a decision
  (``status``, ``idTagInfo.status``, ``idTokenInfo.status``); divergences are counted by action and backend pair
  (``ocppgw_shadow_divergences_total``) and a sample is logged. When the mirror speaks another version, the copy is
  translated (its own translation state, kept under the mirror's name) and the comparison is made on the answer
  translated back into the charger's version.
* CALLs a mirror sends to the charger follow the route's ``mirror_calls``: ``deny`` (default: the mirror gets
  CALLERROR ``SecurityError``, counted) or an allow-list of actions, forwarded to the charger under a gateway unique
  id; the charger's answer goes back to the mirror under the mirror's id.
* A mirror that is down or slow costs the charger and the primary next to nothing: while it is up, the session
  hands each copy to the feed (three references appended to its buffer: action and the frames as received;
  nothing copied, nothing parsed) and delivery runs in the feed's own task. While it is down the feeds are parked
  on the :class:`MirrorBoard` (no wake-ups per charger) and their copies SPOOL: four references appended to one
  list per mirror (by the session itself, without a call, for a one-mirror pass-through route), which the board
  writes to the process's spool stream every ``SPOOL_WRITE_S`` as one entry; one feed probes the mirror per
  back-off period, and when it is back the board moves the spools into the chargers' outboxes (atomically, oldest
  first, including spools that stopped or crashed processes left) and wakes the feeds
  (``ocppgw_outbox_depth``/``_age_seconds``, computed at scrape time, show the backlog).
  ``bench/mirror_cost.py`` measures it at a fixed offered load.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import secrets
import ssl
import time
from collections import deque
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any

import orjson

from gateway.config import BackendConfig
from gateway.errors import BackendUnavailable
from gateway.metrics import Metrics
from gateway.ocpp.actions import action_label
from gateway.ocpp.errors import FrameError
from gateway.ocpp.frames import (
    Call,
    CallError,
    CallResult,
    Raw,
    call_error_text,
    call_result_text,
    call_text,
    parse_frame,
)
from gateway.ocpp.versions import SUBPROTOCOLS
from gateway.store.base import Store, StoreUnavailable, Write
from gateway.store.keys import Keys
from gateway.store.outbox import ENTRY_SEP, Batch, Item, Outbox, Packed, SpoolEntry
from gateway.tasks import stop_task
from gateway.translate import TRANSLATABLE, translator_for
from gateway.translate.base import JsonDict, Translator
from gateway.upstream import Link, Ticker, open_link

__all__ = ["MirrorBoard", "MirrorFeed", "MirrorSettings", "decision_fields", "diverges"]


class MirrorBoard:
    """What the feeds of one mirror share: the circuit breaker, the wait while the mirror is down, the spool, and
    outbox depth and age (summed and maxed per mirror at scrape time).

    While a mirror is down its feeds are parked (:meth:`park`: no feed task runs) and SPOOL: every copy, of every
    charger, is appended to one list per mirror (four references: the feed's tag, action, CALL and answer frames as
    received; for a one-mirror pass-through session the session appends them itself, without a call), and the
    board writes that list to the process's spool stream every ``SPOOL_WRITE_S``, as ONE outbox entry (one store
    call for every charger's copies). One board task per down mirror probes it through one parked feed per back-off
    period. When a probe succeeds the board DRAINS: the feeds stop spooling (new copies go to their own buffers,
    which they do not flush yet), what is left of the list is written, and every spool of that mirror (this
    process's, and those that stopped or crashed processes left) is moved, entry by entry, oldest first, atomically,
    into the chargers' own outboxes; then the feeds are woken and deliver, in order. A down mirror therefore costs
    the charger's path four list appends per copy, and the gateway one store call per ``SPOOL_WRITE_S``.

    Order: a charger's copies are in its outbox (older), then in spools (in spool order), then in its feed's buffer;
    a feed flushes its buffer to its outbox only while the board is :meth:`ready` (no spool left to move), and a
    new feed first makes the board look for spools left by other processes (:meth:`check`).
    """

    def __init__(self, metrics: Metrics, outbox: Outbox, keys: Keys, log: Any) -> None:
        self.metrics = metrics
        self.outbox = outbox
        self.keys = keys
        self.log = log
        self.instance = secrets.token_hex(6)  # this process's spools
        self.next_probe, self.backoff, self.down = {}, {}, set()
        self._probing: set[str] = set()  # mirrors whose turn-taking probe is in flight
        self.feeds: dict[str, set[MirrorFeed]] = {}
        self._parked: dict[str, list[asyncio.Future[None]]] = {}
        self._down_tasks: dict[str, asyncio.Task[None]] = {}
        #: the spool of each mirror whose feeds spool: flat, four items per copy (see MirrorFeed.offer)
        self.spools: dict[str, list[Any]] = {}
        self._late: dict[str, list[Any]] = {}  # copies of feeds that closed while they could not flush
        self._writers: dict[str, asyncio.Task[None]] = {}
        self._locks: dict[str, asyncio.Lock] = {}
        self._spooled: dict[str, int] = {}  # copies this process wrote to its spool, not moved yet
        self._spool_since: dict[str, float] = {}  # unix time of the oldest of them
        self._bounds: dict[str, tuple[int, float]] = {}
        self._ready: dict[str, asyncio.Event] = {}
        self._drains: dict[str, asyncio.Task[None]] = {}
        self._again: set[str] = set()  # a feed started during a drain: look for spools once more after it
        self._store_down: set[str] = set()

    # ------------------------------------------------------------------ feeds

    def register(self, feed: MirrorFeed) -> None:
        name = feed.backend.name
        if name not in self.feeds:
            feeds = self.feeds[name] = set()
            # computed at scrape time from the feeds themselves: nothing to update on the message path
            self.metrics.outbox_depth.labels(name).set_function(
                lambda: sum(f.backlog() for f in list(feeds)) + self.spool_depth(name)
            )
            self.metrics.outbox_age.labels(name).set_function(
                lambda: max([f.backlog_age() for f in list(feeds)] + [self.spool_age(name)])
            )
        self.feeds[name].add(feed)
        bound = self._bounds.get(name)
        if bound is not None:
            n, settings = len(self.feeds[name]), feed.settings
            self._bounds[name] = (max(bound[0], settings.outbox_max_len * n), max(bound[1], settings.outbox_max_age_s))
        spool = self.spools.get(name)
        if spool is not None:
            feed.to_spool(spool)

    def unregister(self, feed: MirrorFeed) -> None:
        self.feeds.get(feed.backend.name, set()).discard(feed)

    def spool_depth(self, mirror: str) -> int:
        return self._spooled.get(mirror, 0) + (len(self.spools.get(mirror, ())) + len(self._late.get(mirror, ()))) // 4

    def spool_age(self, mirror: str) -> float:
        since = self._spool_since.get(mirror)
        return 0.0 if since is None else max(0.0, time.time() - since)

    def spooled_since(self, mirror: str, when: float) -> None:
        """A copy spooled at unix time ``when`` (the oldest wins)."""
        since = self._spool_since.get(mirror)
        if since is None or when < since:
            self._spool_since[mirror] = when

    def adopt(self, mirror: str, copies: list[Any]) -> None:
        """Spool-format copies of a feed that closed while it could not write to its outbox (the board is not
        ready): written to the spool, moved in order with the rest."""
        if not copies:
            return
        spool = self.spools.get(mirror)
        if spool is not None:
            spool += copies
        else:
            self._late.setdefault(mirror, []).extend(copies)
            self._ensure_writer(mirror)

    # ------------------------------------------------------------------ ready: no spool to move first

    def ready(self, mirror: str) -> bool:
        event = self._ready.get(mirror)
        return event is not None and event.is_set()

    async def wait_ready(self, mirror: str) -> None:
        await self._event(mirror).wait()

    def _event(self, mirror: str) -> asyncio.Event:
        event = self._ready.get(mirror)
        if event is None:
            event = self._ready[mirror] = asyncio.Event()
        return event

    def check(self, mirror: str) -> None:
        """A feed starts: unless this process spools that mirror anyway, look for spools other processes left
        (a stopped or crashed gateway's copies of this charger come first) and move them; meanwhile no feed flushes
        its buffer."""
        if mirror in self.spools:
            return
        self._again.add(mirror)  # a drain in flight looks once more; a new one starts by forgetting it
        self._start_drain(mirror)

    def _start_drain(self, mirror: str) -> None:
        task = self._drains.get(mirror)
        if task is None or task.done():
            self._event(mirror).clear()
        _ensure_task(self._drains, mirror, self._drain, "spool")

    async def _drain(self, mirror: str) -> None:
        delay = 0.5
        while True:
            async with self._lock(mirror):  # no write in flight: it could put copies back into the list
                spool = self.spools.get(mirror)
                if spool is not None:
                    if mirror in self.down:
                        return  # down again: the drain after the next successful probe
                    del self.spools[mirror]
                    self._late.setdefault(mirror, []).extend(spool)  # after closed feeds' copies: those are older
                    for feed in list(self.feeds.get(mirror, ())):
                        feed.to_live()  # new copies go to the feeds' buffers, flushed once ready
            self._again.discard(mirror)
            try:
                late = self._late.get(mirror)
                if late:
                    await self._write(mirror, late)
                await self._move_all(mirror)
            except StoreUnavailable as e:
                self._store_failed(mirror, e)
                await asyncio.sleep(delay * (0.8 + 0.4 * random.random()))
                delay = min(delay * 2, 10.0)
                continue
            if mirror in self._store_down:
                self._store_down.discard(mirror)
                self.log.info("mirror_spool_recovered", mirror=mirror)
            if not self._late.get(mirror) and mirror not in self._again and mirror not in self.spools:
                break
        self._spooled.pop(mirror, None)
        self._spool_since.pop(mirror, None)
        self._bounds.pop(mirror, None)
        self._event(mirror).set()
        for feed in list(self.feeds.get(mirror, ())):
            feed.kick()
        self._wake(mirror, everyone=True)

    async def _move_all(self, mirror: str) -> None:
        """Every spool of ``mirror``, entry by entry, the oldest entry of all first, into the chargers' outboxes."""
        outbox = self.outbox
        keys = await outbox.spools(self.keys.mirror_spools(), self.keys.mirror_spool(mirror))
        heads = {}
        for key in keys:
            entry = await outbox.spool_head(key)
            if entry is None:
                await outbox.spool_forget(self.keys.mirror_spools(), key)
            else:
                heads[key] = entry
        misses = 0
        while heads:
            key = min(heads, key=lambda k: (heads[k].at, heads[k].id))
            entry = heads[key]
            result = await outbox.spool_move(key, entry, self._split(mirror, entry))
            if result is None:  # another process moved or trimmed it meanwhile: read again
                misses += 1
                if misses > 1000:
                    raise StoreUnavailable(f"spool {key} keeps changing")
            elif sum(result):
                self.metrics.mirror_copies.labels(mirror, "trimmed").inc(sum(result))
            nxt = await outbox.spool_head(key)
            if nxt is None:
                del heads[key]
                await outbox.spool_forget(self.keys.mirror_spools(), key)
            else:
                heads[key] = nxt

    def _split(self, mirror: str, entry: SpoolEntry) -> list[Batch]:
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
                self.keys.outbox(cid.decode(), mirror),
                Packed(ENTRY_SEP.join(copies), len(copies)),
                int(bounds[cid][0]),
                float(bounds[cid][1]),
            )
            for cid, copies in groups.items()
        ]

    # ------------------------------------------------------------------ the spool

    def _start_spooling(self, mirror: str) -> None:
        if mirror in self.spools:
            return
        spool = self.spools[mirror] = []
        self._event(mirror).clear()
        for feed in list(self.feeds.get(mirror, ())):
            feed.to_spool(spool)
        self._ensure_writer(mirror)

    def _ensure_writer(self, mirror: str) -> None:
        _ensure_task(self._writers, mirror, self._writer, "spool-writer")

    async def _writer(self, mirror: str) -> None:
        """Every SPOOL_WRITE_S, write the spool if it holds SPOOL_CHUNK copies or its oldest is SPOOL_MAX_WAIT_S
        old: under load, small writes often; at a low rate, one store call a second, not ten."""
        loop = asyncio.get_running_loop()
        last = loop.time()
        while True:
            await asyncio.sleep(SPOOL_WRITE_S)
            spool, late = self.spools.get(mirror), self._late.get(mirror)
            if spool is None and not late:
                return  # drained (the drain wrote the rest)
            now = loop.time()
            if now - last < SPOOL_MAX_WAIT_S and len(spool or ()) < 4 * SPOOL_CHUNK and not late:
                continue
            last = now
            try:
                if late:
                    await self._write(mirror, late)
                if spool:
                    await self._write(mirror, spool)
            except StoreUnavailable as e:
                self._store_failed(mirror, e)

    def _store_failed(self, mirror: str, e: Exception) -> None:
        self.metrics.store_errors.labels("outbox").inc()
        if mirror not in self._store_down:
            self._store_down.add(mirror)
            self.log.error("mirror_spool_unavailable", mirror=mirror, error=str(e))

    async def _write(self, mirror: str, spool: list[Any]) -> None:
        """What ``spool`` holds, to this process's spool stream, one entry per SPOOL_CHUNK copies (bounded; on
        failure the copies not written go back in front of the list, bounded too, and StoreUnavailable is raised)."""
        async with self._lock(mirror):
            if not spool:
                return
            taken = spool[:]
            del spool[:]
            if mirror not in self._spool_since:  # appended since the last write at the latest
                self._spool_since[mirror] = time.time() - SPOOL_MAX_WAIT_S
            max_len, max_age_s = self._bound(mirror)
            key, registry = self.keys.mirror_spool(mirror, self.instance), self.keys.mirror_spools()
            step = 4 * SPOOL_CHUNK
            for i in range(0, len(taken), step):
                packed = pack_spool(taken[i : i + step])
                try:
                    trimmed = await self.outbox.spool_append(key, packed, max_len, max_age_s, registry)
                except asyncio.CancelledError:
                    spool[0:0] = taken[i:]  # stopping: the caller writes what is left (twice at worst, never lost)
                    raise
                except StoreUnavailable:
                    spool[0:0] = taken[i:]
                    excess = len(spool) // 4 - max_len
                    if excess > 0:
                        del spool[: 4 * excess]
                        self.metrics.mirror_copies.labels(mirror, "trimmed").inc(excess)
                    raise
                self._spooled[mirror] = self._spooled.get(mirror, 0) + packed.count - trimmed
                if trimmed:
                    self.metrics.mirror_copies.labels(mirror, "trimmed").inc(trimmed)

    def _lock(self, mirror: str) -> asyncio.Lock:
        lock = self._locks.get(mirror)
        if lock is None:
            lock = self._locks[mirror] = asyncio.Lock()
        return lock

    def _bound(self, mirror: str) -> tuple[int, float]:
        """The spool's bounds: room for every feed's outbox bound, the longest age (each charger's own bounds apply
        when its copies are moved); computed once per spooling period, raised as feeds register, never lowered
        while the spool holds copies."""
        bound = self._bounds.get(mirror)
        if bound is None:
            feeds = self.feeds.get(mirror, ())
            max_len = max((f.settings.outbox_max_len for f in feeds), default=10_000) * max(1, len(feeds))
            max_age = max((f.settings.outbox_max_age_s for f in feeds), default=0.0)
            bound = self._bounds[mirror] = (max_len, max_age)
        return bound

    # ------------------------------------------------------------------ parked feeds and probes

    async def park(self, mirror: str) -> None:
        """Wait while ``mirror`` is down: until it is back, or until this feed's turn to probe it."""
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        waiters = self._parked.setdefault(mirror, [])
        waiters.append(fut)
        self._ensure_down_task(mirror)
        try:
            await fut
        finally:
            if fut in waiters:
                waiters.remove(fut)

    def _wake(self, mirror: str, everyone: bool) -> None:
        waiters = self._parked.get(mirror, [])
        chosen = waiters[:] if everyone else waiters[:1]
        del waiters[: len(chosen)]
        for fut in chosen:
            if not fut.done():
                fut.set_result(None)

    def _ensure_down_task(self, mirror: str) -> None:
        _ensure_task(self._down_tasks, mirror, self._while_down, "mirror-down")

    async def _while_down(self, mirror: str) -> None:
        loop = asyncio.get_running_loop()
        while self._parked.get(mirror):
            now = loop.time()
            due = self.next_probe.get(mirror, now) if mirror in self.down else now
            await asyncio.sleep(max(0.0, due - now))
            now = loop.time()
            if mirror not in self.down or now >= self.next_probe.get(mirror, now):
                self._wake(mirror, everyone=mirror not in self.down)
                # the woken feed probes (may_probe moves next_probe on): give it the time to do so; feeds that
                # are parked for another reason (the mirror not down: a version it cannot be translated to) retry
                # once a second
                await asyncio.sleep(0.05 if mirror in self.down else 1.0)

    async def close(self) -> None:
        """Stop the board's tasks (the feeds are closed first); what is still spooled in memory is written to the
        spool stream (bounded), for whichever process sees the mirror back."""
        for task in list(self._down_tasks.values()) + list(self._writers.values()) + list(self._drains.values()):
            await stop_task(task)
        self._down_tasks.clear()
        self._writers.clear()
        self._drains.clear()
        for mirror in set(self.spools) | set(self._late):
            for spool in (self._late.get(mirror), self.spools.get(mirror)):
                if spool:
                    with contextlib.suppress(StoreUnavailable, TimeoutError):
                        async with asyncio.timeout(2.0):
                            await self._write(mirror, spool)

    # One circuit breaker per mirror backend, shared by every charger's feed: while a mirror is down, one feed probes
    # it per back-off period (not one per charger), and the outage is logged once, not once per charger and attempt.
    next_probe: dict[str, float]
    backoff: dict[str, float]
    down: set[str]

    def may_probe(self, mirror: str, now: float) -> bool:
        """Whether a feed may try to connect now: always while the mirror is not known to be down; while it is,
        only the one feed whose turn it is (the others wait for its outcome)."""
        if mirror not in self.down:
            return True
        if now < self.next_probe.get(mirror, 0.0):
            return False
        self.next_probe[mirror] = now + self.backoff.get(mirror, 0.5)
        self._probing.add(mirror)
        return True

    def probe_failed(self, mirror: str, now: float, log: Any, reason: str) -> None:
        if mirror in self.down and mirror not in self._probing:
            return  # a feed that tried before the outage was known: one failure, not one back-off step per charger
        self._probing.discard(mirror)
        delay = min(self.backoff.get(mirror, 0.25) * 2, 30.0)
        self.backoff[mirror], self.next_probe[mirror] = delay, now + delay
        if mirror not in self.down:
            self.down.add(mirror)
            log.warning("mirror_unreachable", mirror=mirror, reason=reason)
        self._start_spooling(mirror)

    def probe_ok(self, mirror: str, log: Any) -> None:
        self._probing.discard(mirror)
        self.backoff.pop(mirror, None)
        self.next_probe.pop(mirror, None)
        if mirror in self.down:
            self.down.discard(mirror)
            log.info("mirror_reachable", mirror=mirror)
        if mirror in self.spools:
            self._start_drain(mirror)  # wakes everyone when done
        else:
            self._wake(mirror, everyone=True)

    def known_down(self, mirror: str, now: float) -> bool:
        """The mirror failed its last probe and the next one is not due: no feed needs to look at it now."""
        return mirror in self.down and now < self.next_probe.get(mirror, 0.0)


def _ensure_task(
    tasks: dict[str, asyncio.Task[None]], mirror: str, run: Callable[[str], Coroutine[Any, Any, None]], name: str
) -> None:
    """Start ``run(mirror)`` as ``tasks[mirror]`` unless it is running."""
    task = tasks.get(mirror)
    if task is None or task.done():
        tasks[mirror] = asyncio.get_running_loop().create_task(run(mirror), name=f"{name}:{mirror}")


#: while a mirror is down, the copies spooled in memory are written to the spool stream as soon as there are
#: SPOOL_CHUNK of them (looked at every SPOOL_WRITE_S), and at least every SPOOL_MAX_WAIT_S: what a crash, not a
#: graceful stop, can lose of them
SPOOL_WRITE_S = 0.1
SPOOL_MAX_WAIT_S = 1.0
#: at most this many copies per spool entry (about 0.5 kB each: a write's blob stays small enough to be built in
#: memory the allocator reuses; 2,500 copies in one blob cost 20x the time to join, page faults mostly, measured)
SPOOL_CHUNK = 500


@dataclass(frozen=True, slots=True)
class MirrorSettings:
    outbox_max_len: int = 10_000
    outbox_max_age_s: float = 7 * 86400.0
    call_timeout_s: float = 30.0
    #: None: deny every CALL from the mirror; else the actions forwarded to the charger
    allow_calls: frozenset[str] | None = None


def _payload(frame: Raw | JsonDict | None) -> JsonDict | None:
    """The payload of a CALL or CALLRESULT frame (raw text), or the payload itself when given as a dict."""
    if frame is None or isinstance(frame, dict):
        return frame
    try:
        parsed = parse_frame(frame)
    except FrameError:
        return None
    return parsed.payload if type(parsed) is Call or type(parsed) is CallResult else None


#: the fields of a mirror copy in its outbox entry: action, the CALL, the primary's answer (empty: none); when it
#: was appended is the stream entry's id (age bounds apply to that). 0x1F cannot occur in JSON text (a control
#: character, outside strings as inside), so the frames are kept as received: no parsing and no JSON escaping while
#: the mirror is away; delivery splits and parses.
SEP = b"\x1f"


def _blob(frame: Raw | JsonDict | None) -> bytes:
    if frame is None:
        return b""
    if isinstance(frame, dict):
        return orjson.dumps(frame)  # a payload (translated sessions hand over dicts)
    return frame if isinstance(frame, bytes) else frame.encode()


#: a feed's buffer holds its copies flat, three items each: action (str), CALL frame, answer frame (b"": none), as
#: the session handed them over (references: nothing copied on the charger's path); :func:`pack` turns them into
#: outbox entries in one join
Buffer = deque[Any]
_SEPS = (SEP, SEP, ENTRY_SEP)


def pack(flat: Buffer) -> Packed:
    """Buffered copies as outbox entries (see :data:`SEP`) joined by ENTRY_SEP: slice assignments and one join, no
    Python step per byte and one copy of each frame."""
    n = len(flat) // 3
    if not n:
        return Packed(b"", 0)
    items = list(flat)
    items[0::3] = [a.encode() for a in items[0::3]]
    parts: list[bytes] = [b""] * (6 * n - 1)
    parts[0::2] = items
    parts[1::2] = (_SEPS * n)[:-1]
    return Packed(b"".join(parts), n)


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


def _frame_or_payload(blob: bytes) -> Raw | JsonDict | None:
    if not blob:
        return None
    if blob.lstrip()[:1] == b"{":
        loaded = orjson.loads(blob)
        return loaded if isinstance(loaded, dict) else None
    return blob


def unpack(data: bytes | JsonDict) -> JsonDict:
    """An outbox entry as {"a": action, "c": CALL frame or payload, "r": answer or None}; entries written as JSON
    objects (older gateways) come back as they are; an unreadable one as {}."""
    if isinstance(data, dict):
        return data
    parts = data.split(SEP)
    if len(parts) != 3:
        return {}
    try:
        return {"a": parts[0].decode(), "c": _frame_or_payload(parts[1]), "r": _frame_or_payload(parts[2])}
    except (ValueError, UnicodeDecodeError):  # orjson.JSONDecodeError is a ValueError
        return {}


def decision_fields(answer: JsonDict | None) -> dict[str, Any]:
    """The fields of an answer that carry a decision: top-level ``status`` and the token results' ``status``."""
    if not answer:
        return {}
    out: dict[str, Any] = {}
    if "status" in answer:
        out["status"] = answer["status"]
    for key in ("idTagInfo", "idTokenInfo"):
        info = answer.get(key)
        if isinstance(info, dict) and "status" in info:
            out["token_status"] = info["status"]
    return out


def diverges(primary: JsonDict | None, mirror: JsonDict | None) -> bool:
    """True when the mirror decided differently on a field both answers carry."""
    p, m = decision_fields(primary), decision_fields(mirror)
    return any(k in m and m[k] != v for k, v in p.items())


class MirrorFeed:
    """Copies of one charger's CALLs toward one mirror backend. Start with :meth:`start`, end with :meth:`close`."""

    def __init__(
        self,
        *,
        charger_id: str,
        charger_version: str,
        primary: str,
        backend: BackendConfig,
        store: Store,
        outbox: Outbox,
        keys: Keys,
        metrics: Metrics,
        settings: MirrorSettings,
        ticker: Ticker,
        max_frame: int,
        log: Any,
        board: MirrorBoard,
        call_charger: Callable[[str, dict[str, Any]], asyncio.Future[Any]] | None = None,
        ssl_context: ssl.SSLContext | None = None,
        password: str | None = None,
    ) -> None:
        self.cid = charger_id
        self.charger_version = charger_version
        self.primary = primary
        self.backend = backend
        self.store = store
        self.outbox = outbox
        self.stream = keys.outbox(charger_id, backend.name)
        self.metrics = metrics
        self.settings = settings
        self.ticker = ticker
        self.max_frame = max_frame
        self.log = log.bind(mirror=backend.name)
        self.call_charger = call_charger
        self.board = board
        self.ssl_context = ssl_context
        self.password = password
        self._buffer: Buffer = deque()  # copies not yet in the outbox (see Buffer)
        self._queued = 0  # copies in the outbox, as far as this feed knows (gauges)
        self._oldest: float | None = None  # unix time of the oldest of them
        self._buffered_since = 0.0  # unix time of the oldest buffered copy
        #: this feed's copies in the spool: charger id and bounds, then the copy (see MirrorBoard._split)
        self.tag = SEP.join(
            (charger_id.encode(), str(settings.outbox_max_len).encode(), repr(settings.outbox_max_age_s).encode(), b"")
        )
        self._spool: list[Any] | None = None  # the board's spool while the mirror is down (see offer)
        self._spool_pending: list[Any] | None = None
        self._flushing = False
        #: set by gateway/cutover.py for a one-mirror pass-through session: hands the session the spool (or None)
        #: so that it appends its copies itself, without calling offer
        self.sink: Callable[[list[Any] | None, bytes], None] | None = None
        self._max_items = 3 * settings.outbox_max_len  # the buffer's bound: three items per copy
        self._wake = asyncio.Event()
        self._closing = False
        self._task: asyncio.Task[None] | None = None
        self._link: Link | None = None
        self._link_down = asyncio.Event()
        self._answer: asyncio.Future[tuple[str, JsonDict, str]] | None = None
        self._pending_id: str | None = None
        self._gid = 0
        self._translator: Translator | None = None
        self._needs_boot = True
        self._store_down = False
        self._live = True
        name = backend.name
        self._delivered = metrics.mirror_copies.labels(name, "delivered")
        self._trimmed = metrics.mirror_copies.labels(name, "trimmed")
        self._mirror_calls = metrics.mirror_calls

    # ------------------------------------------------------------------ hot path (synchronous)

    def offer(self, action: str, call: Raw | JsonDict, primary_answer: Raw | JsonDict | None) -> None:
        """A charger CALL and the primary's answer (None: the primary gave none), as frames (raw bytes, kept as they
        are: parsed only when delivered) or as payload dicts. Never blocks, never raises."""
        spool = self._spool
        if spool is not None:  # the mirror is down: four references to the board's spool (Session does the same)
            if type(call) is bytes and (primary_answer is None or type(primary_answer) is bytes):
                spool += (self.tag, action, call, primary_answer or b"")
            else:
                spool += (self.tag, action, _blob(call), _blob(primary_answer))
            return
        buf = self._buffer
        if len(buf) >= self._max_items:
            buf.popleft()
            buf.popleft()
            buf.popleft()
            self._trimmed.inc()
        elif not buf:
            self._buffered_since = time.time()
        if type(call) is bytes and (primary_answer is None or type(primary_answer) is bytes):  # pass-through
            buf += (action, call, primary_answer or b"")  # references to the frames as received: no copy here
        else:
            buf += (action, _blob(call), _blob(primary_answer))  # translated sessions hand over payload dicts
        # The task flushes the whole buffer: one wake-up per batch, not per copy; none while the mirror is away
        # (the feed is parked and the board writes buffers to the outbox), so a down mirror costs the charger only
        # this append.
        if self._live and len(buf) == 3:
            self._wake.set()

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> None:
        self.board.register(self)
        self.board.check(self.backend.name)
        self._task = asyncio.get_running_loop().create_task(self._run(), name=f"mirror:{self.backend.name}")

    async def close(self, flush_timeout: float = 2.0) -> None:
        """Write what is buffered to the outbox (bounded), stop delivering, close the link."""
        self._closing = True
        self._wake.set()
        task, self._task = self._task, None
        await stop_task(task)
        self.board.unregister(self)
        self.to_live()
        if self._buffer and self.board.ready(self.backend.name):
            with contextlib.suppress(StoreUnavailable, TimeoutError):
                async with asyncio.timeout(flush_timeout):
                    await self._flush()
        if self._buffer:  # the board is moving spooled copies first (or the store failed): the board writes them
            self.board.adopt(self.backend.name, self._tagged(self._take_buffer()))
        if self._link is not None:
            await self._link.close()
            self._link = None

    # ------------------------------------------------------------------ the feed's task

    async def _run(self) -> None:
        delay = 0.5
        loop = asyncio.get_running_loop()
        try:
            await self._update_gauges()  # what an earlier process left in the outbox
        except StoreUnavailable:
            self._queued = 1  # unknown: look when the store is back
        while not self._closing:
            # Something to deliver and no link. While the mirror is known to be away and it is not this feed's turn
            # to probe it, the outbox is not read and this task sleeps: new copies go to the board's spool, written
            # to the store every SPOOL_WRITE_S, at no cost to the charger's messages.
            if (
                self._link is None
                and (self._buffer or self._queued or self._spool is not None)
                and (self.board.known_down(self.backend.name, loop.time()) or not await self._ensure_link())
            ):
                await self._park()
                continue
            if not self._buffer and not self._queued:  # nothing to deliver: wait for a copy (offer wakes us)
                self._wake.clear()
                await self._wake.wait()
                continue
            await self.board.wait_ready(self.backend.name)  # spooled copies are moved to the outboxes first
            try:
                await self._flush()
                entries = await self.outbox.read(self.stream, 50)
                await self._update_gauges()
                if self._store_down:
                    self.log.info("mirror_outbox_recovered")
                    self._store_down = False
            except StoreUnavailable as e:
                if not self._store_down:
                    self.log.error("mirror_outbox_unavailable", error=str(e))
                    self._store_down = True
                self.metrics.store_errors.labels("outbox").inc()
                await asyncio.sleep(delay * (0.8 + 0.4 * random.random()))  # the loop retries the flush
                delay = min(delay * 2, 10.0)
                continue
            if not entries:
                continue  # the top of the loop waits for the next copy
            if not await self._ensure_link():
                await self._park()
                continue
            delay = 0.5
            for entry in entries:
                if not await self._deliver(entry.data):
                    break
                try:
                    await self.outbox.ack(self.stream, [entry.id])
                    await self._flush()
                except StoreUnavailable:
                    break  # retried from the outbox: the mirror may see this one again, never out of order
                self._queued = max(0, self._queued - 1)
                self._delivered.inc()

    async def _park(self) -> None:
        """Wait, without a task wake-up of our own, until the mirror is back or it is this feed's turn to probe."""
        self._live = False  # offer() need not wake us meanwhile
        try:
            await self.board.park(self.backend.name)
        finally:
            self._live = True

    async def _flush(self) -> None:
        if not self._buffer:
            return
        items = self._take_buffer()
        packed = pack(items)
        self._flushing = True
        try:
            trimmed = await self.outbox.append(
                self.stream, packed, self.settings.outbox_max_len, self.settings.outbox_max_age_s
            )
        except StoreUnavailable:
            self._put_back(items)
            raise
        finally:
            self._flushing = False
            pending, self._spool_pending = self._spool_pending, None
            if pending is not None and self.board.spools.get(self.backend.name) is pending:
                self.to_spool(pending)  # the mirror went down during the append: spool from now on
        self._appended(packed.count, trimmed)

    # ------------------------------------------------------------------ spooling (the board's side)

    def to_spool(self, spool: list[Any]) -> None:
        """The mirror is down: what is buffered, then every new copy, goes to the board's spool."""
        if self._flushing:
            self._spool_pending = spool  # after the append in flight (which may put its copies back)
            return
        if self._buffer:
            self.board.spooled_since(self.backend.name, self._buffered_since)
            items, self._buffer = self._buffer, deque()
            spool += self._tagged(items)
        self._spool = spool
        if self.sink is not None:
            self.sink(spool, self.tag)

    def to_live(self) -> None:
        """The board is moving the spool into the outboxes: new copies go to this feed's buffer again."""
        self._spool = self._spool_pending = None
        if self.sink is not None:
            self.sink(None, b"")

    @property
    def spooling(self) -> list[Any] | None:
        """The board's spool while this feed spools (its mirror down), else None."""
        return self._spool

    def kick(self) -> None:
        """Copies may have been moved into this feed's outbox: look."""
        self._queued = max(self._queued, 1)
        self._wake.set()

    def _tagged(self, items: Buffer) -> list[Any]:
        """Buffered copies (three items each) in the spool's format (four: the tag first)."""
        flat = list(items)
        n = len(flat) // 3
        out: list[Any] = [self.tag] * (4 * n)
        out[1::4], out[2::4], out[3::4] = flat[0::3], flat[1::3], flat[2::3]
        return out

    def _take_buffer(self) -> Buffer:
        items, self._buffer = self._buffer, deque()
        if self._oldest is None and items:
            self._oldest = self._buffered_since  # about to be in the outbox (or back in the buffer)
        return items

    def _put_back(self, items: Buffer) -> None:
        """Copies whose append failed: back in front of the buffer, in order, for the next try (bounded: the
        oldest beyond the bound are dropped and counted as trimmed)."""
        items += self._buffer
        excess = len(items) // 3 - self.settings.outbox_max_len
        for _ in range(3 * excess):
            items.popleft()
        if excess > 0:
            self._trimmed.inc(excess)
        self._buffer = items

    def _appended(self, count: int, trimmed: int) -> None:
        if trimmed:
            self._trimmed.inc(trimmed)
        self._queued = max(0, self._queued + count - trimmed)

    async def _update_gauges(self) -> None:
        """Outbox depth and age as the store has them (while delivering), then :meth:`_report`."""
        depth, age = await self.outbox.stats(self.stream)
        self._queued = depth
        self._oldest = None if age is None else time.time() - age

    def backlog(self) -> int:
        """Copies not yet delivered: in the outbox (as last read, plus what was appended since) and buffered
        (with the memory store: all of them while the mirror is away)."""
        return self._queued + len(self._buffer) // 3

    def backlog_age(self) -> float:
        oldest = self._oldest if self._oldest is not None else (self._buffered_since if self._buffer else None)
        return 0.0 if oldest is None else max(0.0, time.time() - oldest)

    # ------------------------------------------------------------------ the mirror link

    async def _ensure_link(self) -> bool:
        if self._link is not None and self._link.transport is not None:
            return True
        if self._link is not None:
            await self._link.close()
            self._link = None
        version = self.backend.ocpp
        if version != self.charger_version and (self.charger_version, version) not in TRANSLATABLE:
            self.log.error("mirror_version_unsupported", mirror_version=version)
            return False
        name = self.backend.name
        now = asyncio.get_running_loop().time()
        if not self.board.may_probe(name, now):
            return False
        try:
            link = await open_link(
                self.backend, self.cid, SUBPROTOCOLS[version], self.metrics, self.max_frame,
                ssl_context=self.ssl_context, ticker=self.ticker, password=self.password,
            )  # fmt: skip
        except BackendUnavailable as e:
            self.board.probe_failed(name, asyncio.get_running_loop().time(), self.log, e.reason)
            return False
        self.board.probe_ok(name, self.log)
        link.attach(self)  # type: ignore[arg-type]  # a LinkSink: from_backend, link_lost, link_restored, log
        link.on_give_up = self._link_down.set
        self._link = link
        self._link_down.clear()
        self._needs_boot = True
        if version != self.charger_version and self._translator is None:
            self._translator = translator_for(self.charger_version, version, options=self.backend.translation)
            try:
                stored = await self.store.get_translation_state(self.cid, self.backend.name)
            except StoreUnavailable:
                stored = None
            if stored is not None:
                self._translator.restore(stored)
        self.log.info("mirror_connected")
        return True

    async def _deliver(self, item: Item) -> bool:
        """Send one copy (translated if needed) and wait for the answer; False when the link went away."""
        data = unpack(item)
        action, payload, primary_answer = data.get("a"), _payload(data.get("c")), _payload(data.get("r"))
        if not isinstance(action, str) or not isinstance(payload, dict):
            return True  # unreadable entry: drop it
        if self._needs_boot and action != "BootNotification":
            boot = None
            with contextlib.suppress(StoreUnavailable):
                boot = await self.store.get_boot(self.cid)
            request = boot.get("request") if boot else None
            if isinstance(request, dict) and not await self._send_copy("BootNotification", request, None):
                return False
        self._needs_boot = False
        return await self._send_copy(action, payload, primary_answer if isinstance(primary_answer, dict) else None)

    async def _send_copy(self, action: str, payload: JsonDict, primary_answer: JsonDict | None) -> bool:
        tr = self._translator
        if tr is None:
            got = await self._call(action, payload)
            if got is None:
                return False
            kind, answer, _ = got
            if kind == "result":
                self._compare(action, primary_answer, answer)
            return True
        plan = tr.from_charger(action, payload)
        results: list[JsonDict] = []
        for index, call in enumerate(plan.calls):
            got = await self._call(call.action, call.payload)
            if got is None:
                return False
            kind, answer, code = got
            if kind == "error":
                sub = plan.on_error(index, code, "") if plan.on_error is not None else None
                if sub is None:
                    self._persist()
                    return True
                answer = sub
            results.append(answer)
        if plan.calls and plan.finish is not None:
            translated = plan.finish(results)
            self._align_transaction(action, translated, primary_answer)
            self._compare(action, primary_answer, translated)
        for call in plan.then_to_csms:
            if await self._call(call.action, call.payload) is None:
                break
        self._persist()
        return True

    def _align_transaction(self, action: str, mine: JsonDict, primary_answer: JsonDict | None) -> None:
        """The charger uses the primary's 1.6 transactionId: re-key the mirror translator's record to it."""
        if action != "StartTransaction" or not primary_answer:
            return
        theirs, ours = primary_answer.get("transactionId"), mine.get("transactionId")
        state = getattr(self._translator, "state", None)
        if isinstance(theirs, int) and isinstance(ours, int) and theirs != ours and state is not None:
            rec = state.transactions.pop(ours, None)
            if rec is not None:
                state.transactions[theirs] = rec

    def _persist(self) -> None:
        if self._translator is not None:
            write = Write("tx", self.cid, self.backend.name, self._translator.snapshot())
            asyncio.get_running_loop().create_task(self._apply(write))

    async def _apply(self, write: Write) -> None:
        with contextlib.suppress(StoreUnavailable):
            await self.store.apply([write])

    async def _call(self, action: str, payload: JsonDict) -> tuple[str, JsonDict, str] | None:
        """One CALL to the mirror; its answer as (kind, payload, error code), or None when the link went away."""
        link = self._link
        if link is None or link.transport is None:
            return None
        self._gid += 1
        uid = f"m{self._gid}"
        loop = asyncio.get_running_loop()
        answer: asyncio.Future[tuple[str, JsonDict, str]] = loop.create_future()
        self._answer, self._pending_id = answer, uid
        link.send(call_text(uid, action, payload))
        down = loop.create_task(self._link_down.wait())
        try:
            async with asyncio.timeout(self.settings.call_timeout_s):
                waiting: set[asyncio.Future[Any]] = {answer, down}
                await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
        except TimeoutError:
            self.metrics.call_timeouts.labels("mirror", self.backend.name).inc()
            return ("error", {}, "Timeout")  # the mirror did not answer: count it delivered, move on
        finally:
            self._pending_id = None
            down.cancel()
        if answer.done() and not answer.cancelled():
            return answer.result()
        return None

    def _compare(self, action: str, primary: JsonDict | None, mirror: JsonDict) -> None:
        if primary is None or not diverges(primary, mirror):
            return
        self.metrics.shadow_divergences.labels(action_label(action), self.primary, self.backend.name).inc()
        self.log.info(
            "shadow_divergence", action=action, primary_decision=decision_fields(primary),
            mirror_decision=decision_fields(mirror),
        )  # fmt: skip

    # ------------------------------------------------------------------ LinkSink (frames from the mirror)

    def from_backend(self, text: bytes) -> None:
        try:
            frame = parse_frame(text)
        except FrameError:
            self.metrics.frame_errors.labels("mirror", "malformed").inc()
            return
        if type(frame) is Call:
            self._mirror_call(frame)
            return
        if frame.unique_id != self._pending_id or self._answer is None or self._answer.done():
            self.metrics.dropped_results.labels("from_mirror", "unknown_id").inc()
            return
        if type(frame) is CallResult:
            self._answer.set_result(("result", frame.payload, ""))
        elif type(frame) is CallError:
            self._answer.set_result(("error", frame.details, frame.code))

    def _mirror_call(self, call: Call) -> None:
        allowed = self.settings.allow_calls
        link = self._link
        if link is None:
            return
        if allowed is None or call.action not in allowed or self.call_charger is None:
            self._mirror_calls.labels(self.backend.name, "denied").inc()
            link.send(
                call_error_text(
                    call.unique_id,
                    "SecurityError",
                    "this gateway does not forward CALLs from a mirror backend to the charger",
                )
            )
            return
        self._mirror_calls.labels(self.backend.name, "forwarded").inc()

        def answered(fut: asyncio.Future[Any]) -> None:
            if self._link is not link or link.transport is None:
                return
            if fut.cancelled() or fut.exception() is not None:
                link.send(call_error_text(call.unique_id, "GenericError", "the charger did not answer"))
                return
            ans = fut.result()
            if ans.error is not None:
                code, desc, details = ans.error
                link.send(call_error_text(call.unique_id, code, desc, details))
            else:
                link.send(call_result_text(call.unique_id, ans.result or {}))

        try:
            fut = self.call_charger(call.action, call.payload)
        except OverflowError:
            link.send(call_error_text(call.unique_id, "GenericError", "charger busy"))
            return
        fut.add_done_callback(answered)

    def link_lost(self) -> None:
        if self._answer is not None and not self._answer.done():
            self._link_down.set()

    def link_restored(self) -> None:
        self._needs_boot = True
