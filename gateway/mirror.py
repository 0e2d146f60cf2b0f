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
* A mirror that is down or slow costs the charger and the primary nothing but appending three references per copy
  to the feed's buffer (action and the frames as received; nothing copied, nothing parsed): delivery runs in the
  feed's own task; while the mirror is down the feeds are parked on the :class:`MirrorBoard` (no wake-ups per
  charger), which writes their buffers to the outbox in groups (one Redis call per group, one stream entry per
  charger and flush), probes the mirror through one feed per back-off period and wakes them all when it is back
  (``ocppgw_outbox_depth``/``_age_seconds``, computed at scrape time, show the backlog).
  ``bench/mirror_cost.py`` measures it at a fixed offered load.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import ssl
import time
from collections import deque
from collections.abc import Callable
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
from gateway.store.outbox import ENTRY_SEP, Batch, Item, MemoryOutbox, Outbox, Packed
from gateway.tasks import stop_task
from gateway.translate import TRANSLATABLE, translator_for
from gateway.translate.base import JsonDict, Translator
from gateway.upstream import Link, Ticker, open_link

__all__ = ["MirrorBoard", "MirrorFeed", "MirrorSettings", "decision_fields", "diverges"]


class MirrorBoard:
    """What the feeds of one mirror share: outbox depth and age (summed and maxed per mirror at scrape time), one
    circuit breaker per mirror, and the wait while a mirror is down.

    While a mirror is down its feeds are parked (:meth:`park`): no feed task runs. One board task per down mirror
    writes every feed's buffered copies to the outbox every ``FLUSH_WHILE_DOWN_S``, in ``FLUSH_SLOTS`` groups spread
    over that time (Redis: one script call per group), and when the next probe is due it wakes one parked feed to
    try; when that probe succeeds every feed is woken. A down mirror therefore costs the gateway one timer, not a
    wake-up per charger.
    """

    def __init__(self, metrics: Metrics) -> None:
        self.metrics = metrics
        self.next_probe, self.backoff, self.down = {}, {}, set()
        self._probing: set[str] = set()  # mirrors whose turn-taking probe is in flight
        self.feeds: dict[str, set[MirrorFeed]] = {}
        self._slots: dict[str, list[set[MirrorFeed]]] = {}  # the feeds of each flush group
        self._parked: dict[str, list[asyncio.Future[None]]] = {}
        self._down_tasks: dict[str, asyncio.Task[None]] = {}
        self._flushed: dict[str, asyncio.Event] = {}

    def register(self, feed: MirrorFeed) -> None:
        name = feed.backend.name
        if name not in self.feeds:
            feeds = self.feeds[name] = set()
            # computed at scrape time from the feeds themselves: nothing to update on the message path
            self.metrics.outbox_depth.labels(name).set_function(lambda: sum(f.backlog() for f in list(feeds)))
            self.metrics.outbox_age.labels(name).set_function(
                lambda: max((f.backlog_age() for f in list(feeds)), default=0.0)
            )
        self.feeds[name].add(feed)
        self._slots.setdefault(name, [set() for _ in range(FLUSH_SLOTS)])[feed.flush_slot].add(feed)

    def unregister(self, feed: MirrorFeed) -> None:
        self.feeds.get(feed.backend.name, set()).discard(feed)
        slots = self._slots.get(feed.backend.name)
        if slots is not None:
            slots[feed.flush_slot].discard(feed)

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

    async def flushed(self, mirror: str) -> None:
        """Return once no board flush of ``mirror``'s buffers is in flight (a feed's own append must not overtake
        it: one stream's entries stay in order)."""
        event = self._flushed.get(mirror)
        if event is not None:
            await event.wait()

    def _wake(self, mirror: str, everyone: bool) -> None:
        waiters = self._parked.get(mirror, [])
        chosen = waiters[:] if everyone else waiters[:1]
        del waiters[: len(chosen)]
        for fut in chosen:
            if not fut.done():
                fut.set_result(None)

    def _ensure_down_task(self, mirror: str) -> None:
        task = self._down_tasks.get(mirror)
        if task is None or task.done():
            loop = asyncio.get_running_loop()
            self._down_tasks[mirror] = loop.create_task(self._while_down(mirror), name=f"mirror-down:{mirror}")

    async def _while_down(self, mirror: str) -> None:
        loop = asyncio.get_running_loop()
        step = FLUSH_WHILE_DOWN_S / FLUSH_SLOTS
        next_flush, slot = loop.time() + step, 0
        while self._parked.get(mirror):
            now = loop.time()
            due = self.next_probe.get(mirror, now) if mirror in self.down else now
            await asyncio.sleep(max(0.0, min(next_flush, due) - now))
            now = loop.time()
            if now >= next_flush:
                # one slot of the feeds at a time: each feed every FLUSH_WHILE_DOWN_S, the work spread over it
                next_flush, slot = now + step, (slot + 1) % FLUSH_SLOTS
                await self._flush_buffers(mirror, slot)
            if mirror not in self.down or now >= self.next_probe.get(mirror, now):
                self._wake(mirror, everyone=mirror not in self.down)
                # the woken feed probes (may_probe moves next_probe on): give it the time to do so; feeds that
                # are parked for another reason (the mirror not down: a version it cannot be translated to) retry
                # once a second
                await asyncio.sleep(0.05 if mirror in self.down else 1.0)

    async def _flush_buffers(self, mirror: str, slot: int) -> None:
        """The buffered copies of the feeds in ``slot`` to the outbox, together (durable outboxes only)."""
        slots = self._slots.get(mirror)
        feeds = [f for f in slots[slot] if f._buffer and f._durable] if slots else []
        if not feeds:
            return
        event = self._flushed.setdefault(mirror, asyncio.Event())
        event.clear()
        try:
            taken = [(f, f._take_buffer()) for f in feeds]
            packed = [pack(items) for _, items in taken]
            batches: list[Batch] = [
                (f.stream, p, f.settings.outbox_max_len, f.settings.outbox_max_age_s)
                for (f, _), p in zip(taken, packed, strict=True)
            ]
            results = await feeds[0].outbox.append_many(batches)
            for (f, items), p, result in zip(taken, packed, results, strict=True):
                if isinstance(result, BaseException):
                    f._put_back(items)
                else:
                    f._appended(p.count, result)
        finally:
            event.set()

    async def close(self) -> None:
        """Stop the down-mirror tasks (the feeds are closed first)."""
        for task in list(self._down_tasks.values()):
            await stop_task(task)
        self._down_tasks.clear()

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

    def probe_ok(self, mirror: str, log: Any) -> None:
        self._probing.discard(mirror)
        self.backoff.pop(mirror, None)
        self.next_probe.pop(mirror, None)
        if mirror in self.down:
            self.down.discard(mirror)
            log.info("mirror_reachable", mirror=mirror)
        self._wake(mirror, everyone=True)

    def known_down(self, mirror: str, now: float) -> bool:
        """The mirror failed its last probe and the next one is not due: no feed needs to look at it now."""
        return mirror in self.down and now < self.next_probe.get(mirror, 0.0)


#: while a mirror is away, buffered copies are written to its outbox this often (not at every copy)
FLUSH_WHILE_DOWN_S = 5.0
#: the feeds of a down mirror are flushed in this many groups, one group every FLUSH_WHILE_DOWN_S / FLUSH_SLOTS
FLUSH_SLOTS = 10


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


def record(action: str, call: Raw | JsonDict, answer: Raw | JsonDict | None) -> bytes:
    """A mirror copy as one outbox entry (see :data:`SEP`)."""
    return SEP.join((action.encode(), _blob(call), _blob(answer)))


#: a feed's buffer holds its copies flat, three items each: action (str), CALL frame, answer frame (b"": none), as
#: the session handed them over (references: nothing copied on the charger's path); :func:`pack` turns them into
#: outbox entries in one join
Buffer = deque[Any]
_SEPS = (SEP, SEP, ENTRY_SEP)


def pack(flat: Buffer) -> Packed:
    """Buffered copies as :func:`record` entries joined by ENTRY_SEP: slice assignments and one join, no Python
    step per byte and one copy of each frame."""
    n = len(flat) // 3
    if not n:
        return Packed(b"", 0)
    items = list(flat)
    items[0::3] = [a.encode() for a in items[0::3]]
    parts: list[bytes] = [b""] * (6 * n - 1)
    parts[0::2] = items
    parts[1::2] = (_SEPS * n)[:-1]
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
        self.flush_slot = random.randrange(FLUSH_SLOTS)
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
        self._durable = not isinstance(outbox, MemoryOutbox)
        name = backend.name
        self._delivered = metrics.mirror_copies.labels(name, "delivered")
        self._trimmed = metrics.mirror_copies.labels(name, "trimmed")
        self._mirror_calls = metrics.mirror_calls

    # ------------------------------------------------------------------ hot path (synchronous)

    def offer(self, action: str, call: Raw | JsonDict, primary_answer: Raw | JsonDict | None) -> None:
        """A charger CALL and the primary's answer (None: the primary gave none), as frames (raw bytes, kept as they
        are: parsed only when delivered) or as payload dicts. Never blocks, never raises."""
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
        self._task = asyncio.get_running_loop().create_task(self._run(), name=f"mirror:{self.backend.name}")

    async def close(self, flush_timeout: float = 2.0) -> None:
        """Write what is buffered to the outbox (bounded), stop delivering, close the link."""
        self._closing = True
        self._wake.set()
        task, self._task = self._task, None
        await stop_task(task)
        self.board.unregister(self)
        if self._buffer:
            with contextlib.suppress(StoreUnavailable, TimeoutError):
                async with asyncio.timeout(flush_timeout):
                    await self._flush()
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
            # to probe it, the outbox is not read and this task sleeps: copies stay buffered (memory store) or the
            # board writes them to the outbox every FLUSH_WHILE_DOWN_S (Redis), at no cost to the charger's messages.
            if (
                self._link is None
                and (self._buffer or self._queued)
                and (self.board.known_down(self.backend.name, loop.time()) or not await self._ensure_link())
            ):
                await self._park()
                continue
            if not self._buffer and not self._queued:  # nothing to deliver: wait for a copy (offer wakes us)
                self._wake.clear()
                await self._wake.wait()
                continue
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
        await self.board.flushed(self.backend.name)
        items = self._take_buffer()
        packed = pack(items)
        try:
            trimmed = await self.outbox.append(
                self.stream, packed, self.settings.outbox_max_len, self.settings.outbox_max_age_s
            )
        except StoreUnavailable:
            self._put_back(items)
            raise
        self._appended(packed.count, trimmed)

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
