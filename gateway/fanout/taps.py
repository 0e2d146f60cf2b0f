"""Message taps: copies of selected OCPP messages, as JSON events, to a Redis Stream or an HTTP endpoint.

One :class:`Taps` per process holds every configured tap (``taps:`` in the config). The session asks
:meth:`Taps.wants` once per route (a session whose route no tap selects pays nothing after that), then hands each
relayed message to :meth:`Taps.offer`: synchronous, no I/O, O(number of taps). Each tap that selects the message
(by action, direction, message type and route origin) appends one event to its in-memory buffer::

    {"ts": "2024-05-01T12:00:00.123Z", "charger_id": "CP1", "direction": "from_charger", "message_type": "call",
     "action": "StartTransaction", "unique_id": "42", "payload": {...}}

``action`` of a CALLRESULT/CALLERROR is the action of the CALL it answers. Each tap is a durable feed
(:class:`TapFeed`, a :class:`gateway.fanout.feed.DurableFeed`): its one task moves its buffer to its outbox
(``<p>:tap:<name>``: a Redis Stream with the Redis store, so events survive a restart and every replica appends to
the same one) and delivers the outbox to the sink, oldest first:

* ``redis_stream``: ``XADD <key> MAXLEN ~ <max_len> * event <json>`` per event, one pipeline per batch of
  :data:`REDIS_BATCH`, through the store (:meth:`gateway.store.base.Store.add_to_stream`).
* ``http``: ``POST`` of a JSON array of up to ``batch`` events (a smaller batch waits at most ``flush_interval_s``
  for more). A 2xx answer acknowledges the batch; any other status, a timeout or a refused connection is a failed
  attempt (``failed``, the events stay in the outbox) retried with exponential back-off and jitter, from
  ``retry_initial_s`` up to ``retry_max_s``.

Delivery is in order and at least once: a batch leaves the outbox only after the sink accepted it, so a crash or a
lost acknowledgement between the two repeats that batch (never anything older after something newer). With several
replicas on one Redis, one process at a time delivers a tap's outbox: it holds the tap's lease
(``<p>:tap:<name>:lease``, a :class:`gateway.store.base.Lease`), extended before every batch; the others only
append.

Bounds, as mirror outboxes: the outbox keeps at most ``outbox.max_len`` events no older than ``outbox.max_age_s``;
while the store is away the buffer keeps at most ``min(outbox.max_len, BUFFER_MAX)`` events. Everything dropped
unsent is counted (``ocppgw_tap_events_total{result="trimmed"}``). ``ocppgw_tap_outbox_depth`` shows the backlog.
The caller must not change a payload after offering it (events hold it by reference until they are flushed).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, Protocol

import aiohttp
import orjson

from gateway.config import TapConfig, TapHttpConfig, TapRedisStreamConfig
from gateway.fanout.feed import DurableFeed
from gateway.metrics import Metrics
from gateway.store.base import Lease, Store, StoreUnavailable
from gateway.store.keys import Keys
from gateway.store.outbox import Entry
from gateway.tasks import stop_task

__all__ = ["BUFFER_MAX", "REDIS_BATCH", "TapFeed", "Taps", "tap_event"]

#: events a tap keeps in memory while its outbox cannot be written (the store is away)
BUFFER_MAX = 10_000
#: events per XADD pipeline of a redis_stream tap
REDIS_BATCH = 100
#: wait for new events at most this long before refreshing the outbox depth gauge
_IDLE_S = 5.0

Event = dict[str, Any]


def tap_event(
    charger_id: str, direction: str, message_type: str, action: str, unique_id: str, payload: dict[str, Any]
) -> Event:
    """The JSON event of one message, stamped now (ISO-8601 UTC, milliseconds)."""
    ts = datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    return {
        "ts": ts,
        "charger_id": charger_id,
        "direction": direction,
        "message_type": message_type,
        "action": action,
        "unique_id": unique_id,
        "payload": payload,
    }


# ---------------------------------------------------------------------------------------------------------------
# sinks


class _Sink(Protocol):
    #: events per delivery attempt
    batch: int
    #: how long a smaller batch waits for more events
    linger_s: float

    async def deliver(self, events: list[Event]) -> str | None:
        """Send one batch; None when the sink accepted it, else why not (the batch is sent again later)."""
        ...


class _RedisStreamSink:
    def __init__(self, store: Store, config: TapRedisStreamConfig) -> None:
        self._store = store
        self.key = config.key
        self.max_len = config.max_len
        self.batch = REDIS_BATCH
        self.linger_s = 0.0

    async def deliver(self, events: list[Event]) -> str | None:
        try:
            await self._store.add_to_stream(self.key, [orjson.dumps(e) for e in events], self.max_len)
        except StoreUnavailable as e:
            return str(e)
        return None


class _HttpSink:
    def __init__(self, session: Callable[[], aiohttp.ClientSession], config: TapHttpConfig) -> None:
        self._session = session
        self.url = config.url
        self.batch = config.batch
        self.linger_s = config.flush_interval_s
        self._headers = {"Content-Type": "application/json", **config.headers}
        self._timeout = aiohttp.ClientTimeout(total=config.timeout_s)

    async def deliver(self, events: list[Event]) -> str | None:
        try:
            async with self._session().post(
                self.url, data=orjson.dumps(events), headers=self._headers, timeout=self._timeout,
                allow_redirects=False,
            ) as resp:  # fmt: skip
                if 200 <= resp.status < 300:
                    return None
                return f"HTTP {resp.status}"
        except TimeoutError:
            return "timeout"
        except (aiohttp.ClientError, OSError) as e:
            return f"{type(e).__name__}: {e}"


# ---------------------------------------------------------------------------------------------------------------
# one tap


class TapFeed(DurableFeed):
    """One tap: its filters, its buffer, and the durable feed that delivers its outbox to its sink."""

    deliver_on_close = True

    def __init__(self, config: TapConfig, sink: _Sink, store: Store, keys: Keys, lease: Lease, lease_ttl_s: float,
                 metrics: Metrics, log: Any) -> None:  # fmt: skip
        super().__init__(
            store.outbox(), keys.tap(config.name), metrics, log.bind(tap=config.name), kind="tap", store_op="tap_outbox"
        )
        self.config = config
        self.name = config.name
        self.actions = config.actions
        self.directions = config.directions
        self.message_types = config.message_types
        self.routes = config.routes
        self.sink = sink
        self.batch = sink.batch
        self.lease = lease
        self.lease_ttl_s = lease_ttl_s
        http = config.http
        self.retry_initial_s = http.retry_initial_s if http is not None else 0.5
        self.retry_max_s = http.retry_max_s if http is not None else 30.0
        self.buffer_max = min(config.outbox_max_len, BUFFER_MAX)
        self.buffer: list[Event] = []
        self.wake = asyncio.Event()
        self.task: asyncio.Task[None] | None = None
        self._offered = metrics.tap_events.labels(config.name, "offered")
        self._delivered = metrics.tap_events.labels(config.name, "delivered")
        self._failed = metrics.tap_events.labels(config.name, "failed")
        self._trimmed = metrics.tap_events.labels(config.name, "trimmed")
        self._depth = metrics.tap_outbox_depth.labels(config.name)
        self._failing = False
        self._holding = False

    def selects(self, route_origin: str, direction: str, message_type: str, action: str) -> bool:
        return (
            direction in self.directions
            and message_type in self.message_types
            and (self.actions is None or action in self.actions)
            and (self.routes is None or route_origin in self.routes)
        )

    def push(self, event: Event) -> None:
        buf = self.buffer
        if len(buf) >= self.buffer_max:
            del buf[0]
            self._trimmed.inc()
        buf.append(event)
        self._offered.inc()
        self.wake.set()

    # ------------------------------------------------------------------ the durable feed's hooks

    async def read(self) -> list[Entry] | None:
        if not await self._hold_lease():
            return None
        return await self.outbox.read(self.stream, self.batch)

    async def after_read(self) -> None:
        depth, _ = await self.outbox.stats(self.stream)
        self._depth.set(depth)

    async def idle(self, not_ours: bool) -> None:
        if not_ours:  # another process delivers: try again within a third of its lease
            await self.pause(self.lease_ttl_s / 3)
        else:
            await self._sleep(_IDLE_S, until=1)

    async def deliver(self, entries: list[Entry]) -> bool:
        linger = self._linger(entries)
        if linger > 0 and not self.closing:
            await self._sleep(linger, until=self.sink.batch - len(entries))
            return True  # read again, with what came meanwhile
        reason = await self.sink.deliver([e.data for e in entries if isinstance(e.data, dict)])
        if reason is not None:
            self._failed.inc(len(entries))
            if not self._failing:
                self.log.warning("tap_delivery_failing", reason=reason)
                self._failing = True
            return False
        if self._failing:
            self.log.info("tap_delivery_recovered")
            self._failing = False
        self._delivered.inc(len(entries))
        with contextlib.suppress(StoreUnavailable):  # else delivered again: at least once, never out of order
            await asyncio.shield(self.outbox.ack(self.stream, [e.id for e in entries]))
        return True

    async def pause(self, seconds: float) -> None:
        await self._sleep(seconds)

    def _linger(self, entries: list[Entry]) -> float:
        """How long a batch that is not full may still wait for more events."""
        if len(entries) >= self.sink.batch or self.sink.linger_s <= 0:
            return 0.0
        return min(self.sink.linger_s, entries[0].at + self.sink.linger_s - time.time())

    async def _hold_lease(self) -> bool:
        holding = await self.lease.hold()
        if holding != self._holding:
            self._holding = holding
            if self.lease.shared:
                self.log.info("tap_lease_taken" if holding else "tap_lease_lost")
        return holding

    async def _sleep(self, seconds: float, *, until: int | None = None) -> None:
        """Wait ``seconds``, moving offered events to the outbox as they come; return early when closing or once
        ``until`` events were moved."""
        moved = 0
        self.wake.clear()
        if self.buffer:
            self.wake.set()
        try:
            async with asyncio.timeout(max(0.0, seconds)):
                while not self.closing:
                    await self.wake.wait()
                    self.wake.clear()
                    if self.closing:
                        return
                    moved += len(self.buffer)
                    try:
                        await self.flush()
                    except StoreUnavailable:
                        continue  # kept in the buffer; the loop reports the store when it wakes up
                    if until is not None and moved >= until:
                        return
        except TimeoutError:
            return

    async def flush(self) -> None:
        if not self.buffer:
            return
        items, self.buffer = self.buffer, []
        try:
            trimmed = await self.outbox.append(
                self.stream, items, self.config.outbox_max_len, self.config.outbox_max_age_s
            )
        except (StoreUnavailable, asyncio.CancelledError):
            self.buffer[:0] = items  # keep them, in order, for the next try (cancelled: maybe appended twice)
            overflow = len(self.buffer) - self.buffer_max
            if overflow > 0:
                del self.buffer[:overflow]
                self._trimmed.inc(overflow)
            raise
        if trimmed:
            self._trimmed.inc(trimmed)


# ---------------------------------------------------------------------------------------------------------------
# every tap of a process


class Taps:
    """Every configured tap. :meth:`start` once the loop runs, :meth:`close` at shutdown (both owned by the runtime)."""

    def __init__(self, taps: tuple[TapConfig, ...], store: Store, keys: Keys, metrics: Metrics, log: Any,
                 *, node: str) -> None:  # fmt: skip
        self.store = store
        self.metrics = metrics
        self.log = log
        self.node = node
        self._http: aiohttp.ClientSession | None = None
        self._feeds: list[TapFeed] = []
        for config in taps:
            sink: _Sink
            if config.http is not None:
                sink = _HttpSink(self._session, config.http)
                lease_ttl = max(15.0, 3 * (config.http.timeout_s + config.http.flush_interval_s))
            else:
                assert config.redis_stream is not None  # parse_config: exactly one sink
                sink = _RedisStreamSink(store, config.redis_stream)
                lease_ttl = 15.0
            lease = store.lease(keys.tap_lease(config.name), self.node, lease_ttl)
            self._feeds.append(TapFeed(config, sink, store, keys, lease, lease_ttl, metrics, log))
        self._all_routes = any(f.routes is None for f in self._feeds)
        self._origins = frozenset(o for f in self._feeds for o in (f.routes or ()))

    def wants(self, route_origin: str) -> bool:
        """True when some tap may select messages of this route (else the session need not call :meth:`offer`)."""
        return self._all_routes or route_origin in self._origins

    def offer(self, charger_id: str, route_origin: str, direction: str, message_type: str, action: str,
              unique_id: str, payload: dict[str, Any]) -> None:  # fmt: skip
        """One relayed message (``message_type``: call, callresult, callerror; ``action``: the CALL's). Synchronous,
        no I/O: each tap that selects it buffers the event. Never blocks, never raises."""
        event: Event | None = None
        for feed in self._feeds:
            if feed.selects(route_origin, direction, message_type, action):
                if event is None:
                    event = tap_event(charger_id, direction, message_type, action, unique_id, payload)
                feed.push(event)

    def start(self) -> None:
        """One task per tap (outboxes left by an earlier run are delivered first, in order)."""
        loop = asyncio.get_running_loop()
        if any(f.config.redis_stream for f in self._feeds) and not any(f.lease.shared for f in self._feeds):
            self.log.error("tap_needs_redis_store", taps=[f.name for f in self._feeds if f.config.redis_stream])
        for feed in self._feeds:
            if feed.task is None:
                feed.task = loop.create_task(feed.run(), name=f"tap:{feed.name}")

    async def close(self, flush_timeout: float = 2.0) -> None:
        """Deliver what is waiting for up to ``flush_timeout`` seconds (one attempt per batch, no back-off), write
        what could not be sent to the outbox (with Redis: delivered after the next start), stop every task."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + flush_timeout
        for feed in self._feeds:
            feed.closing = True
            feed.wake.set()
        tasks = [f.task for f in self._feeds if f.task is not None]
        if tasks:
            await asyncio.wait(tasks, timeout=flush_timeout)
        for feed in self._feeds:
            task, feed.task = feed.task, None
            if task is not None:
                await stop_task(task)
        for feed in self._feeds:
            try:
                async with asyncio.timeout(max(0.2, deadline - loop.time())):
                    await feed.flush()
                    await feed.lease.release()
            except (StoreUnavailable, TimeoutError):
                if feed.buffer:
                    self.log.error("tap_events_lost", tap=feed.name, events=len(feed.buffer))
                    feed._trimmed.inc(len(feed.buffer))
                    feed.buffer.clear()
        if self._http is not None:
            await self._http.close()
            self._http = None

    def _session(self) -> aiohttp.ClientSession:
        if self._http is None:
            self._http = aiohttp.ClientSession()
        return self._http
