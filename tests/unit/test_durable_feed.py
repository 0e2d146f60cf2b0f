"""The durable feed's loop (buffer -> outbox -> ordered delivery), through a kind of the test's own on a MemoryOutbox:
in order, acknowledged, at least once; store outages and failed deliveries back off and retry; bugs in a kind's
hooks are logged, counted, and the feed goes on."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import pytest
import structlog
from structlog.testing import capture_logs

from gateway.fanout.feed import DurableFeed
from gateway.metrics import Metrics
from gateway.store.base import StoreUnavailable
from gateway.store.memory import MemoryOutbox
from gateway.store.outbox import Entry, Item, Items, Outbox

STREAM = "test:tap:recorder"
HOOKS = ("starting", "ready", "flush", "read", "after_read", "idle", "deliver")


class FlakyOutbox(MemoryOutbox):
    """A MemoryOutbox whose next appends and reads raise StoreUnavailable when told to (the store boundary)."""

    def __init__(self) -> None:
        super().__init__()
        self.failing = {"append": 0, "read": 0}

    def fail(self, *, append: int = 0, read: int = 0) -> None:
        self.failing = {"append": append, "read": read}

    def _maybe_fail(self, op: str) -> None:
        if self.failing[op] > 0:
            self.failing[op] -= 1
            raise StoreUnavailable("connection refused")

    async def append(self, stream: str, items: Items, max_len: int, max_age_s: float) -> int:
        self._maybe_fail("append")
        return await super().append(stream, items, max_len, max_age_s)

    async def read(self, stream: str, count: int) -> list[Entry]:
        self._maybe_fail("read")
        return await super().read(stream, count)


class Recorder(DurableFeed):
    """A durable feed kind of the test's own. :meth:`offer` buffers items, :meth:`flush` appends the buffer to the
    outbox, the consumer records the entries it is handed and acknowledges them; told to (``fail``), a delivery
    takes the first entry but fails before acknowledging it; told to (``crash_in``), a hook raises a bug once."""

    batch = 3
    retry_initial_s = 0.02
    retry_max_s = 0.08

    def __init__(self, outbox: Outbox, metrics: Metrics, log: Any) -> None:
        super().__init__(outbox, STREAM, metrics, log, kind="recorder", store_op="recorder_outbox")
        self.buffer: list[Item] = []
        self.wake = asyncio.Event()
        #: set after every delivery attempt and every bug raised (for the test to wait on)
        self.changed = asyncio.Event()
        #: what the consumer took, in the order it took it
        self.got: list[Item] = []
        #: per delivery attempt: the entries handed over, and when (loop time)
        self.batches: list[list[Item]] = []
        self.attempts: list[float] = []
        self.fail = 0
        self.crash_in: str | None = None

    def offer(self, *items: Item) -> None:
        self.buffer += items
        self.wake.set()

    def _hook(self, name: str) -> None:
        if self.crash_in == name:
            self.crash_in = None
            self.changed.set()
            raise RuntimeError(f"a bug in {name}")

    async def starting(self) -> None:
        self._hook("starting")

    async def ready(self) -> bool:
        self._hook("ready")
        return True

    async def flush(self) -> None:
        self._hook("flush")
        if not self.buffer:
            return
        items, self.buffer = self.buffer, []
        try:
            await self.outbox.append(self.stream, items, 1000, 0)
        except StoreUnavailable:
            self.buffer[:0] = items
            raise

    async def read(self) -> list[Entry] | None:
        self._hook("read")
        return await super().read()

    async def after_read(self) -> None:
        self._hook("after_read")

    async def idle(self, not_ours: bool) -> None:
        self._hook("idle")
        await self.wake.wait()
        self.wake.clear()

    async def deliver(self, entries: list[Entry]) -> bool:
        self._hook("deliver")
        self.attempts.append(asyncio.get_running_loop().time())
        self.batches.append([e.data for e in entries])
        try:
            if self.fail:
                self.fail -= 1
                self.got.append(entries[0].data)  # taken, but the acknowledgement is lost
                return False
            for e in entries:
                self.got.append(e.data)
                await self.outbox.ack(self.stream, [e.id])
            return True
        finally:
            self.changed.set()

    async def until(self, pred: Callable[[], bool]) -> None:
        async with asyncio.timeout(2.0):
            while not pred():
                self.changed.clear()
                await self.changed.wait()


def n(*nums: int) -> list[Item]:
    return [{"n": i} for i in nums]


def _all_levels() -> Any:
    """A logger that lets every level through to capture_logs (the test session filters below warning)."""
    return structlog.wrap_logger(None, wrapper_class=structlog.make_filtering_bound_logger(logging.DEBUG))


@asynccontextmanager
async def running(feed: Recorder) -> AsyncIterator[asyncio.Task[None]]:
    """The feed's task; closed at the end (it must end by itself, promptly)."""
    task = asyncio.get_running_loop().create_task(feed.run())
    try:
        yield task
    finally:
        feed.closing = True
        feed.wake.set()
        try:
            async with asyncio.timeout(1.0):
                await task
        finally:
            task.cancel()


def sample(metrics: Metrics, name: str, **labels: str) -> float:
    return metrics.registry.get_sample_value(name, labels) or 0.0


async def test_entries_are_delivered_in_order_and_acknowledged() -> None:
    outbox, metrics = MemoryOutbox(), Metrics()
    feed = Recorder(outbox, metrics, structlog.get_logger())
    feed.offer(*n(0, 1, 2, 3, 4))
    async with running(feed):
        await feed.until(lambda: len(feed.got) == 5)
        feed.offer(*n(5))
        await feed.until(lambda: len(feed.got) == 6)
    assert feed.got == n(0, 1, 2, 3, 4, 5)
    assert feed.batches == [n(0, 1, 2), n(3, 4), n(5)]  # at most ``batch`` entries per round, oldest first
    assert await outbox.read(STREAM, 10) == []  # every one acknowledged
    assert sample(metrics, "ocppgw_internal_errors_total", where="recorder") == 0


async def test_a_store_outage_is_logged_once_counted_retried_and_delivery_resumes_in_order() -> None:
    outbox, metrics = FlakyOutbox(), Metrics()
    with capture_logs() as logs:
        feed = Recorder(outbox, metrics, _all_levels())
        async with running(feed):
            feed.offer(*n(0))
            await feed.until(lambda: feed.got == n(0))
            outbox.fail(append=2, read=2)  # two rounds cannot write the buffer, two more cannot read
            feed.offer(*n(1, 2))
            await feed.until(lambda: len(feed.got) == 3)
            assert outbox.failing == {"append": 0, "read": 0}
            assert sample(metrics, "ocppgw_store_errors_total", op="recorder_outbox") == 4
            outbox.fail(read=1)  # another outage later: logged again
            feed.offer(*n(3))
            await feed.until(lambda: len(feed.got) == 4)
    assert feed.got == n(0, 1, 2, 3)
    assert sample(metrics, "ocppgw_store_errors_total", op="recorder_outbox") == 5
    events = [(e["event"], e["log_level"]) for e in logs if e["event"].startswith("recorder_outbox")]
    assert events == [("recorder_outbox_unavailable", "error"), ("recorder_outbox_recovered", "info")] * 2
    assert [e["error"] for e in logs if e["event"] == "recorder_outbox_unavailable"] == ["connection refused"] * 2
    assert await outbox.read(STREAM, 10) == []


async def test_a_store_outage_backs_off_from_retry_initial_s_doubling() -> None:
    outbox = FlakyOutbox()
    outbox.fail(read=3)
    feed = Recorder(outbox, Metrics(), structlog.get_logger())
    feed.offer(*n(0))
    loop = asyncio.get_running_loop()
    started = loop.time()
    async with running(feed):
        await feed.until(lambda: feed.got == n(0))
    # three back-offs, each at least half its step (jitter): 0.01 + 0.02 + 0.04
    assert feed.attempts[0] - started >= 0.5 * (1 + 2 + 4) * Recorder.retry_initial_s - 1e-3


async def test_a_failed_delivery_backs_off_and_the_same_entries_come_again() -> None:
    outbox, metrics = MemoryOutbox(), Metrics()
    feed = Recorder(outbox, metrics, structlog.get_logger())
    feed.fail = 2
    feed.offer(*n(0, 1, 2, 3, 4))
    async with running(feed):
        await feed.until(lambda: len(feed.batches) == 4)
    # at least once (0 was taken three times: its acknowledgement was lost twice), never out of order
    assert feed.got == n(0, 0, 0, 1, 2, 3, 4)
    assert feed.batches == [n(0, 1, 2), n(0, 1, 2), n(0, 1, 2), n(3, 4)]
    a, b, c = feed.attempts[:3]
    i = Recorder.retry_initial_s
    assert b - a >= 0.5 * i - 1e-3 and c - b >= 0.5 * 2 * i - 1e-3  # jittered, doubling
    assert await outbox.read(STREAM, 10) == []
    assert sample(metrics, "ocppgw_internal_errors_total", where="recorder") == 0


@pytest.mark.parametrize("hook", HOOKS)
async def test_a_bug_in_a_hook_is_logged_counted_and_the_feed_goes_on(hook: str) -> None:
    outbox, metrics = MemoryOutbox(), Metrics()
    with capture_logs() as logs:
        feed = Recorder(outbox, metrics, structlog.get_logger())
        feed.crash_in = hook
        if hook != "idle":  # idle is only reached with nothing to deliver
            feed.offer(*n(0, 1))
        async with running(feed) as task:
            if hook == "idle":
                await feed.until(lambda: feed.crash_in is None)  # the feed ran into its idle hook
                feed.offer(*n(0, 1))
            await feed.until(lambda: len(feed.got) == 2)
            feed.offer(*n(2))
            await feed.until(lambda: len(feed.got) == 3)
            assert not task.done()
    assert feed.got == n(0, 1, 2)
    crashes = [e for e in logs if e["event"] == "recorder_feed_crashed"]
    assert len(crashes) == 1
    assert crashes[0]["log_level"] == "error" and crashes[0]["exc_info"] is True
    assert sample(metrics, "ocppgw_internal_errors_total", where="recorder") == 1
    assert await outbox.read(STREAM, 10) == []


async def test_a_bug_while_closing_ends_the_feed() -> None:
    metrics = Metrics()
    with capture_logs() as logs:
        feed = Recorder(MemoryOutbox(), metrics, structlog.get_logger())
        feed.crash_in = "starting"
        feed.closing = True
        async with asyncio.timeout(1.0):
            await feed.run()
    assert [e["event"] for e in logs] == ["recorder_feed_crashed"]
    assert sample(metrics, "ocppgw_internal_errors_total", where="recorder") == 1


@pytest.mark.parametrize("deliver_on_close", [True, False])
async def test_deliver_on_close_delivers_what_is_left_when_closing(deliver_on_close: bool) -> None:
    outbox = MemoryOutbox()
    feed = Recorder(outbox, Metrics(), structlog.get_logger())
    feed.deliver_on_close = deliver_on_close
    feed.fail = 1  # the consumer is failing: the feed backs off, holding every entry
    feed.offer(*n(0, 1, 2, 3, 4, 5, 6))
    task = asyncio.get_running_loop().create_task(feed.run())
    try:
        await feed.until(lambda: len(feed.batches) == 1)
        feed.closing = True  # during the back-off
        async with asyncio.timeout(1.0):
            await task  # ends by itself
    finally:
        task.cancel()
    if deliver_on_close:
        assert feed.got == n(0, 0, 1, 2, 3, 4, 5, 6)  # every round until the outbox is empty
        assert await outbox.read(STREAM, 10) == []
    else:
        assert feed.got == n(0)  # stopped at once: the outbox keeps the rest, in order, for the next process
        assert [e.data for e in await outbox.read(STREAM, 10)] == n(0, 1, 2, 3, 4, 5, 6)


async def test_deliver_on_close_stops_at_the_first_failed_delivery() -> None:
    outbox = MemoryOutbox()
    feed = Recorder(outbox, Metrics(), structlog.get_logger())
    feed.deliver_on_close = True
    feed.fail = 100
    feed.offer(*n(0, 1))
    feed.closing = True
    async with asyncio.timeout(1.0):
        await feed.run()  # no back-off and retry once closing
    assert feed.batches == [n(0, 1)]
    assert [e.data for e in await outbox.read(STREAM, 10)] == n(0, 1)
