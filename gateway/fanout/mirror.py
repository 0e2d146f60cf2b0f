"""Mirror backends: a copy of every charger-initiated CALL, through a durable outbox, without ever slowing the charger.

One :class:`MirrorFeed` per (connected charger, mirror backend), a :class:`~gateway.fanout.feed.DurableFeed`; a
charger's feeds are a :class:`MirrorSet`, kept in line with its route. The session hands each charger CALL together
with the primary's answer to the feed (:meth:`MirrorFeed.offer`, synchronous, no I/O: three references appended to
its buffer, nothing copied, nothing parsed). The feed's task appends buffered copies to the outbox and delivers it
in order, one outstanding CALL at a time (a :class:`~gateway.links.caller.LinkCaller` on a link from the link
factory: the mirror's own TLS context, client certificate and Basic auth password, as for a primary):

* Order and once-only: an entry is removed from the outbox only after the mirror answered it (CALLRESULT or
  CALLERROR); if the link drops first, the same entry is sent again on the next connection, before anything newer.
  (A mirror can therefore see one entry twice when its answer was lost with the link; never out of order.)
* Boot first: on every new connection to the mirror, if the next entry is not a BootNotification, the charger's
  last BootNotification (from the store) is sent first, so the mirror knows the charger before anything else.
* Shadow comparison (:mod:`gateway.fanout.shadow`): the mirror's answer is compared with the primary's on the
  fields that carry a decision; divergences are counted and sampled in the log. When the mirror speaks another
  version, the copy is translated (its own translation state, kept under the mirror's name and persisted through
  the write-behind writer) and the comparison is made on the answer translated back.
* CALLs a mirror sends to the charger follow the route's ``mirror_calls``: ``deny`` (default: the mirror gets
  CALLERROR ``SecurityError``, counted) or an allow-list of actions, forwarded to the charger under a gateway unique
  id; the charger's answer goes back to the mirror under the mirror's id.
* A mirror that is down costs the charger next to nothing: its feeds are parked on the
  :class:`~gateway.fanout.board.MirrorBoard` and their copies spool (:mod:`gateway.fanout.spool`).
  ``bench/mirror_cost.py`` measures it at a fixed offered load.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import orjson

from gateway.config import BackendConfig
from gateway.core.jobs import AdminAnswer, Receiver
from gateway.core.plan import PlanRun
from gateway.errors import BackendUnavailable, NoUpstreamCredentials
from gateway.fanout.board import MirrorBoard
from gateway.fanout.feed import DurableFeed
from gateway.fanout.shadow import compare
from gateway.fanout.spool import SEP
from gateway.links.caller import LinkCaller, Reply
from gateway.links.factory import LinkFactory
from gateway.metrics import Metrics
from gateway.ocpp.errors import FrameError
from gateway.ocpp.frames import Call, CallResult, Raw, call_error_text, call_result_text, parse_frame
from gateway.ocpp.versions import OcppVersion
from gateway.store.base import Store, StoreUnavailable, Write
from gateway.store.keys import Keys
from gateway.store.outbox import ENTRY_SEP, Entry, Item, Outbox, Packed
from gateway.tasks import stop_task
from gateway.translate import TRANSLATABLE, translator_for
from gateway.translate.base import JsonDict, Translator

__all__ = ["MirrorContext", "MirrorFeed", "MirrorSet", "MirrorSettings", "pack", "unpack"]


@dataclass(frozen=True, slots=True)
class MirrorSettings:
    outbox_max_len: int = 10_000
    outbox_max_age_s: float = 7 * 86400.0
    call_timeout_s: float = 30.0
    #: None: deny every CALL from the mirror; else the actions forwarded to the charger
    allow_calls: frozenset[str] | None = None


@dataclass(frozen=True, slots=True)
class MirrorContext:
    """What every mirror feed of a process shares."""

    store: Store
    outbox: Outbox
    keys: Keys
    metrics: Metrics
    board: MirrorBoard
    links: LinkFactory
    #: write-behind of state writes (a mirror's translation state)
    persist: Callable[[Write], None]


# ---------------------------------------------------------------------------------------------------------------
# the outbox entry of one copy: action, the CALL, the primary's answer (empty: none), joined by SEP; when it was
# appended is the stream entry's id (age bounds apply to that). The frames are kept as received: no parsing and no
# JSON escaping while the mirror is away; delivery splits and parses.

#: a feed's buffer holds its copies flat, three items each: action (str), CALL frame, answer frame (b"": none), as
#: the session handed them over (references: nothing copied on the charger's path); :func:`pack` turns them into
#: outbox entries in one join
Buffer = deque[Any]
_SEPS = (SEP, SEP, ENTRY_SEP)


def pack(flat: Buffer) -> Packed:
    """Buffered copies as outbox entries joined by ENTRY_SEP: slice assignments and one join, no Python step per byte
    and one copy of each frame."""
    n = len(flat) // 3
    if not n:
        return Packed(b"", 0)
    items = list(flat)
    items[0::3] = [a.encode() for a in items[0::3]]
    parts: list[bytes] = [b""] * (6 * n - 1)
    parts[0::2] = items
    parts[1::2] = (_SEPS * n)[:-1]
    return Packed(b"".join(parts), n)


def _blob(frame: Raw | JsonDict | None) -> bytes:
    if frame is None:
        return b""
    if isinstance(frame, dict):
        return orjson.dumps(frame)  # a payload (translated sessions hand over dicts)
    return frame if isinstance(frame, bytes) else frame.encode()


def _frame_or_payload(blob: bytes) -> Raw | JsonDict | None:
    if not blob:
        return None
    if blob.lstrip()[:1] == b"{":
        loaded = orjson.loads(blob)
        return loaded if isinstance(loaded, dict) else None
    return blob


def unpack(data: Item) -> JsonDict:
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


def _payload(frame: Raw | JsonDict | None) -> JsonDict | None:
    """The payload of a CALL or CALLRESULT frame (raw text), or the payload itself when given as a dict."""
    if frame is None or isinstance(frame, dict):
        return frame
    try:
        parsed = parse_frame(frame)
    except FrameError:
        return None
    return parsed.payload if type(parsed) is Call or type(parsed) is CallResult else None


# ---------------------------------------------------------------------------------------------------------------


class MirrorFeed(DurableFeed):
    """Copies of one charger's CALLs toward one mirror backend. Start with :meth:`start`, end with :meth:`close`."""

    def __init__(
        self,
        ctx: MirrorContext,
        *,
        charger_id: str,
        charger_version: OcppVersion,
        primary: str,
        backend: BackendConfig,
        settings: MirrorSettings,
        log: Any,
        call_charger: Callable[[str, JsonDict, Receiver], None] | None = None,
        charger_password: str | None = None,
    ) -> None:
        super().__init__(
            ctx.outbox, ctx.keys.outbox(charger_id, backend.name), ctx.metrics, log.bind(mirror=backend.name),
            kind="mirror", store_op="outbox",
        )  # fmt: skip
        self.ctx = ctx
        self.board = ctx.board
        self.cid = charger_id
        self.charger_version = charger_version
        self.primary = primary
        self.backend = backend
        self.settings = settings
        self.call_charger = call_charger
        self.charger_password = charger_password
        self._buffer: Buffer = deque()  # copies not yet in the outbox (see Buffer)
        self._queued = 0  # copies in the outbox, as far as this feed knows (gauges)
        self._oldest: float | None = None  # unix time of the oldest of them
        self._buffered_since = 0.0  # unix time of the oldest buffered copy
        #: this feed's copies in the spool: charger id and bounds, then the copy (see Spool.split)
        self.tag = SEP.join(
            (charger_id.encode(), str(settings.outbox_max_len).encode(), repr(settings.outbox_max_age_s).encode(), b"")
        )
        self._spool: list[Any] | None = None  # the board's spool while the mirror is down (see offer)
        self._spool_pending: list[Any] | None = None
        self._flushing = False
        #: set by the MirrorSet for a one-mirror pass-through session: hands the session the spool (or None) so that
        #: it appends its copies itself, without calling offer
        self.sink: Callable[[list[Any] | None, bytes], None] | None = None
        self._max_items = 3 * settings.outbox_max_len  # the buffer's bound: three items per copy
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._caller: LinkCaller | None = None
        self._translator: Translator | None = None
        self._needs_boot = True
        self._live = True
        name = backend.name
        self._delivered = ctx.metrics.mirror_copies.labels(name, "delivered")
        self._trimmed = ctx.metrics.mirror_copies.labels(name, "trimmed")

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
        # The task flushes the whole buffer: one wake-up per batch, not per copy; none while the mirror is away.
        if self._live and len(buf) == 3:
            self._wake.set()

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> None:
        self.board.register(self)
        self.board.check(self.backend.name)
        self._task = asyncio.get_running_loop().create_task(self.run(), name=f"mirror:{self.backend.name}")

    async def close(self, flush_timeout: float = 2.0) -> None:
        """Write what is buffered to the outbox (bounded), stop delivering, close the link."""
        self.closing = True
        self._wake.set()
        task, self._task = self._task, None
        await stop_task(task)
        self.board.unregister(self)
        self.to_live()
        if self._buffer and self.board.ready(self.backend.name):
            with contextlib.suppress(StoreUnavailable, TimeoutError):
                async with asyncio.timeout(flush_timeout):
                    await self.flush()
        if self._buffer:  # the board is moving spooled copies first (or the store failed): the board writes them
            self.board.spool(self.backend.name).adopt(self._tagged(self._take_buffer()))
        await self._drop_link()

    # ------------------------------------------------------------------ the durable feed's hooks

    async def starting(self) -> None:
        try:
            await self._update_gauges()  # what an earlier process left in the outbox
        except StoreUnavailable:
            self._queued = 1  # unknown: look when the store is back

    async def ready(self) -> bool:
        # Something to deliver and no link. While the mirror is known to be away and it is not this feed's turn to
        # probe it, the outbox is not read and this task sleeps: new copies go to the board's spool, written to the
        # store every SPOOL_WRITE_S, at no cost to the charger's messages.
        now = asyncio.get_running_loop().time()
        if (
            self._caller is None
            and (self._buffer or self._queued or self._spool is not None)
            and (self.board.known_down(self.backend.name, now) or not await self._ensure_link())
        ):
            await self._park()
            return False
        if not self._buffer and not self._queued:  # nothing to deliver: wait for a copy (offer wakes us)
            self._wake.clear()
            await self._wake.wait()
            return False
        await self.board.wait_ready(self.backend.name)  # spooled copies are moved to the outboxes first
        return not self.closing

    async def after_read(self) -> None:
        await self._update_gauges()

    async def deliver(self, entries: list[Entry]) -> bool:
        if not await self._ensure_link():
            await self._park()
            return True
        for entry in entries:
            if not await self._deliver(entry.data):
                break  # the link went away: from the outbox again, once it is back
            try:
                await self.outbox.ack(self.stream, [entry.id])
                await self.flush()
            except StoreUnavailable:
                break  # retried from the outbox: the mirror may see this one again, never out of order
            self._queued = max(0, self._queued - 1)
            self._delivered.inc()
        return True

    async def flush(self) -> None:
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
            if pending is not None and self.board.spooling(self.backend.name) is pending:
                self.to_spool(pending)  # the mirror went down during the append: spool from now on
        if trimmed:
            self._trimmed.inc(trimmed)
        self._queued = max(0, self._queued + packed.count - trimmed)

    async def _park(self) -> None:
        """Wait, without a task wake-up of our own, until the mirror is back or it is this feed's turn to probe."""
        self._live = False  # offer() need not wake us meanwhile
        try:
            await self.board.park(self.backend.name)
        finally:
            self._live = True

    # ------------------------------------------------------------------ spooling (the board's side)

    def to_spool(self, spool: list[Any]) -> None:
        """The mirror is down: what is buffered, then every new copy, goes to the board's spool."""
        if self._flushing:
            self._spool_pending = spool  # after the append in flight (which may put its copies back)
            return
        if self._buffer:
            self.board.spool(self.backend.name).spooled_at(self._buffered_since)
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

    async def _update_gauges(self) -> None:
        """Outbox depth and age as the store has them (while delivering)."""
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
        caller = self._caller
        if caller is not None and caller.link.transport is not None:
            return True
        await self._drop_link()
        version = self.backend.ocpp
        if version != self.charger_version and (self.charger_version, version) not in TRANSLATABLE:
            self.log.error("mirror_version_unsupported", mirror_version=version)
            return False
        name = self.backend.name
        loop = asyncio.get_running_loop()
        if not self.board.may_probe(name, loop.time()):
            return False
        try:
            link = await self.ctx.links.open(self.backend, self.cid, charger_password=self.charger_password)
        except (BackendUnavailable, NoUpstreamCredentials) as e:
            self.board.probe_failed(name, loop.time(), e.reason)
            return False
        except StoreUnavailable as e:
            self.board.probe_failed(name, loop.time(), f"store unavailable: {e}")
            return False
        self.board.probe_ok(name)
        self._caller = LinkCaller(
            link, timeout_s=self.settings.call_timeout_s, metrics=self.metrics, side="mirror",
            on_call=self._mirror_call, on_restored=self._restored,
        )  # fmt: skip
        self._needs_boot = True
        if version != self.charger_version and self._translator is None:
            self._translator = translator_for(self.charger_version, version, options=self.backend.translation)
            try:
                stored = await self.ctx.store.get_translation_state(self.cid, self.backend.name)
            except StoreUnavailable:
                stored = None
            if stored is not None:
                self._translator.restore(stored)
        self.log.info("mirror_connected")
        return True

    async def _drop_link(self) -> None:
        caller, self._caller = self._caller, None
        if caller is not None:
            caller.close()
            await caller.link.close()

    def _restored(self) -> None:
        self._needs_boot = True

    async def _deliver(self, item: Item) -> bool:
        """Send one copy (translated if needed) and wait for the answer; False when the link went away."""
        data = unpack(item)
        action, payload, primary_answer = data.get("a"), _payload(data.get("c")), _payload(data.get("r"))
        if not isinstance(action, str) or not isinstance(payload, dict):
            return True  # unreadable entry: drop it
        if self._needs_boot and action != "BootNotification":
            boot = None
            with contextlib.suppress(StoreUnavailable):
                boot = await self.ctx.store.get_boot(self.cid)
            request = boot.get("request") if boot else None
            if isinstance(request, dict) and not await self._send_copy("BootNotification", request, None):
                return False
        self._needs_boot = False
        return await self._send_copy(action, payload, primary_answer if isinstance(primary_answer, dict) else None)

    async def _send_copy(self, action: str, payload: JsonDict, primary_answer: JsonDict | None) -> bool:
        tr = self._translator
        if tr is None:
            reply = await self._call(action, payload)
            if reply is None:
                return False
            if reply.kind == "result":
                self._compare(action, primary_answer, reply.payload)
            return True
        plan = tr.from_charger(action, payload)
        if plan.calls:
            run = PlanRun(plan)
            while True:
                reply = await self._call(run.call.action, run.call.payload)
                if reply is None:
                    return False
                more: bool | None
                if reply.kind == "result":
                    more = run.answered(reply.payload)
                else:
                    more = run.failed(reply.code or "Timeout", "")
                if more is None:
                    self._persist()
                    return True
                if not more:
                    break
            translated = run.finish()
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
            self.ctx.persist(Write("tx", self.cid, self.backend.name, self._translator.snapshot()))

    async def _call(self, action: str, payload: JsonDict) -> Reply | None:
        """One CALL to the mirror; its reply (a timeout counts as an answer: the copy is delivered, move on), or
        None when the link went away."""
        caller = self._caller
        if caller is None:
            return None
        reply = await caller.call(action, payload)
        if reply.kind == "lost":
            return None
        if reply.kind == "timeout":
            self.metrics.call_timeouts.labels("mirror", self.backend.name).inc()
        return reply

    def _compare(self, action: str, primary: JsonDict | None, mirror: JsonDict) -> None:
        compare(self.metrics, self.log, action, self.primary, self.backend.name, primary, mirror)

    # ------------------------------------------------------------------ CALLs from the mirror

    def _mirror_call(self, call: Call) -> None:
        caller = self._caller
        if caller is None:
            return
        allowed = self.settings.allow_calls
        name = self.backend.name
        if allowed is None or call.action not in allowed or self.call_charger is None:
            self.metrics.mirror_calls.labels(name, "denied").inc()
            caller.send(
                call_error_text(
                    call.unique_id,
                    "SecurityError",
                    "this gateway does not forward CALLs from a mirror backend to the charger",
                )
            )
            return
        self.metrics.mirror_calls.labels(name, "forwarded").inc()

        def answered(answer: AdminAnswer | BaseException) -> None:
            if self._caller is not caller or caller.link.transport is None:
                return
            if isinstance(answer, BaseException):
                caller.send(call_error_text(call.unique_id, "GenericError", "the charger did not answer"))
            elif answer.error is not None:
                code, desc, details = answer.error
                caller.send(call_error_text(call.unique_id, code, desc, details))
            else:
                caller.send(call_result_text(call.unique_id, answer.result or {}))

        try:
            self.call_charger(call.action, call.payload, answered)
        except OverflowError:
            caller.send(call_error_text(call.unique_id, "GenericError", "charger busy"))


class MirrorSet:
    """The mirror feeds of one connected charger, kept in line with its route (:meth:`sync`)."""

    def __init__(self, ctx: MirrorContext, session: Any, log: Any, charger_password: str | None) -> None:
        self.ctx = ctx
        self.session = session
        self.log = log
        self.charger_password = charger_password
        self.feeds: dict[str, MirrorFeed] = {}

    def sync(self, primary: str, mirrors: tuple[BackendConfig, ...], settings: MirrorSettings) -> list[MirrorFeed]:
        """Start feeds for the mirrors that have none; return the feeds no longer wanted (the caller closes them)."""
        session = self.session
        wanted = {b.name: b for b in mirrors}
        feeds = self.feeds
        stale = [feeds.pop(name) for name in list(feeds) if name not in wanted]
        for name, backend in wanted.items():
            if name in feeds:
                continue
            feed = MirrorFeed(
                self.ctx, charger_id=session.charger_id, charger_version=session.version, primary=primary,
                backend=backend, settings=settings, log=self.log, call_charger=session.call_charger,
                charger_password=self.charger_password,
            )  # fmt: skip
            feeds[name] = feed
            feed.start()
        for feed in feeds.values():
            feed.primary = primary
            feed.sink = None
        for feed in stale:
            feed.sink = None
        session.mirror_spool, session.mirror_tag = None, b""
        if len(feeds) == 1:
            feed = next(iter(feeds.values()))
            session.mirror = feed.offer  # the common case: no fan-out call per copy
            if session.translator is None:  # pass-through: frames as received; while the mirror is down, no call
                feed.sink = self._spool_sink
                if feed.spooling is not None:
                    self._spool_sink(feed.spooling, feed.tag)
        elif feeds:
            offers = tuple(f.offer for f in feeds.values())

            def fan_out(action: str, call: Any, answer: Any) -> None:
                for offer in offers:
                    offer(action, call, answer)

            session.mirror = fan_out
        else:
            session.mirror = None
        return stale

    def _spool_sink(self, spool: list[Any] | None, tag: bytes) -> None:
        self.session.mirror_spool, self.session.mirror_tag = spool, tag

    async def close(self) -> None:
        """Close every feed (their buffered copies are written to the outbox)."""
        feeds = list(self.feeds.values())
        self.feeds.clear()
        self.session.mirror = None
        self.session.mirror_spool = None
        for feed in feeds:
            await feed.close()
