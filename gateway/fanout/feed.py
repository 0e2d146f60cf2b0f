"""The durable feed: buffer -> outbox -> ordered, at-least-once delivery. Mirrors and taps are its two kinds.

A feed takes copies on the message path into an in-memory buffer (synchronously, no I/O: each kind has its own
``offer``), and one task per feed moves the buffer into its outbox (:class:`gateway.store.outbox.Outbox`: a Redis
Stream with the Redis store, so copies survive a restart and every replica appends to the same one) and delivers
the outbox, oldest first. An entry leaves the outbox only after its consumer took it, so a crash or a lost
acknowledgement repeats it (at least once), never anything older after something newer (in order).

:meth:`DurableFeed.run` is that loop, once for every kind::

    ready?  ── no ──▶ (the kind waited: for a copy, a link, its lease) ─▶ again
      │ yes
    flush the buffer, read up to ``batch`` entries   ── store away ──▶ logged once, counted, back-off, again
      │
    none ──▶ idle (the kind waits) ─▶ again
      │
    deliver them (the kind acknowledges what its consumer took)  ── failed ──▶ back-off, again

The kinds: :class:`gateway.fanout.mirror.MirrorFeed` (one CALL at a time to a mirror backend, parked while it is
down, its copies spooled meanwhile) and :class:`gateway.fanout.taps.TapFeed` (batches to a Redis Stream or an HTTP
sink, delivered by one process of the fleet at a time: a lease). A bug that escapes a kind's code is logged and
counted (``ocppgw_internal_errors_total{where}``), and the feed starts again after a back-off: a feed never dies
quietly.
"""

from __future__ import annotations

import abc
import asyncio
import random
from typing import Any

from gateway.metrics import Metrics
from gateway.store.base import StoreUnavailable
from gateway.store.outbox import Entry, Outbox

__all__ = ["DurableFeed", "jitter"]


def jitter(seconds: float) -> float:
    """A back-off with jitter (0.5x to 1.5x), so that many feeds do not retry in step."""
    return seconds * (0.5 + random.random())


class DurableFeed(abc.ABC):
    """One feed's outbox and its delivery loop. A kind overrides the hooks below; :meth:`run` is the task."""

    #: entries read (and delivered) per round
    batch = 50
    #: back-off after a store failure or a failed delivery: from ``retry_initial_s``, doubling, up to ``retry_max_s``
    retry_initial_s = 0.5
    retry_max_s = 10.0
    #: once closing, go on delivering until the outbox is empty or a delivery fails (taps, whose close is bounded
    #: by the caller); False: stop at once (mirrors: their outbox waits for the next process)
    deliver_on_close = False

    def __init__(self, outbox: Outbox, stream: str, metrics: Metrics, log: Any, *, kind: str, store_op: str) -> None:
        self.outbox = outbox
        self.stream = stream
        self.metrics = metrics
        self.log = log
        #: ``mirror`` or ``tap``: the prefix of its log events and the label of its internal errors
        self.kind = kind
        #: the ``op`` label of ``ocppgw_store_errors_total`` for its outbox
        self.store_op = store_op
        self.closing = False
        self._store_down = False

    async def run(self) -> None:
        """Deliver until closed. A bug is logged and counted, and the loop starts again after a back-off."""
        while True:
            try:
                await self._loop()
                return
            except Exception:
                self.log.exception(f"{self.kind}_feed_crashed")
                self.metrics.internal_errors.labels(self.kind).inc()
                if self.closing:
                    return
                await self.pause(self.retry_max_s)

    async def _loop(self) -> None:
        delay = self.retry_initial_s
        await self.starting()
        while self.deliver_on_close or not self.closing:
            if not await self.ready():
                continue
            try:
                await self.flush()
                entries = await self.read()
                await self.after_read()
            except StoreUnavailable as e:
                self._store_failed(e)
                if self.closing:
                    return
                await self.pause(jitter(delay))
                delay = min(delay * 2, self.retry_max_s)
                continue
            if self._store_down:
                self.log.info(f"{self.kind}_outbox_recovered")
                self._store_down = False
                delay = self.retry_initial_s
            if not entries:
                if self.closing:
                    return
                await self.idle(entries is None)
                continue
            if await self.deliver(entries):
                delay = self.retry_initial_s
                continue
            if self.closing:
                return
            await self.pause(jitter(delay))
            delay = min(delay * 2, self.retry_max_s)

    def _store_failed(self, e: Exception) -> None:
        self.metrics.store_errors.labels(self.store_op).inc()
        if not self._store_down:
            self.log.error(f"{self.kind}_outbox_unavailable", error=str(e))
            self._store_down = True

    # ------------------------------------------------------------------ hooks

    async def starting(self) -> None:
        """Once, before the first round (e.g. read what an earlier process left)."""
        return None

    async def ready(self) -> bool:
        """Whether to read and deliver now; False after waiting for a reason to look again."""
        return True

    async def flush(self) -> None:
        """Move the buffer into the outbox (raises StoreUnavailable, keeping the buffer, bounded)."""
        return None

    async def read(self) -> list[Entry] | None:
        """The oldest entries to deliver; None when this process may not deliver now (another holds the lease)."""
        return await self.outbox.read(self.stream, self.batch)

    async def after_read(self) -> None:
        """Refresh gauges from the store."""
        return None

    async def idle(self, not_ours: bool) -> None:
        """Nothing to deliver (``not_ours``: another process delivers): wait for a reason to look again."""
        return None

    @abc.abstractmethod
    async def deliver(self, entries: list[Entry]) -> bool:
        """Deliver ``entries`` in order and acknowledge what the consumer took; False when the consumer failed
        (the loop backs off; what was not acknowledged is delivered again)."""

    async def pause(self, seconds: float) -> None:
        """Wait ``seconds`` (a kind may go on moving its buffer meanwhile, and return early when closing)."""
        await asyncio.sleep(seconds)
