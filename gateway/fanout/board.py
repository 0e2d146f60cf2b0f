"""The mirror board: what every charger's feed toward one mirror shares.

* **The circuit breaker.** While a mirror is down, one feed probes it per back-off period (up to 30 s), not one per
  charger, and the outage is logged once (``mirror_unreachable`` / ``mirror_reachable``).
* **Parking.** A feed with nothing it can do while its mirror is away waits on the board (:meth:`park`: no task
  wake-up of its own); one board task per down mirror wakes one parked feed per probe, and everyone when it is back.
* **The spool** (:class:`gateway.fanout.spool.Spool`): while the mirror is down, every copy of every charger goes to
  one list per mirror, written to this process's spool stream. When a probe succeeds the board DRAINS: the feeds
  stop spooling (new copies go to their own buffers, which they do not flush yet), what is left of the list is
  written, every spool of that mirror (this process's, and those stopped or crashed processes left) is moved into
  the chargers' outboxes, oldest first; then the feeds are woken and deliver, in order.
* **Gauges.** Outbox depth and age per mirror (``ocppgw_outbox_depth``/``_age_seconds``), summed and maxed over the
  feeds and the spool at scrape time: nothing to update on the message path.

Order: a charger's copies are in its outbox (older), then in spools (in spool order), then in its feed's buffer; a
feed flushes its buffer to its outbox only while the board is :meth:`ready` (no spool left to move), and a new feed
first makes the board look for spools left by other processes (:meth:`check`).
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Callable, Coroutine
from typing import Any, Protocol

from gateway.fanout.feed import jitter
from gateway.fanout.spool import Spool
from gateway.metrics import Metrics
from gateway.store.base import StoreUnavailable
from gateway.store.keys import Keys
from gateway.store.outbox import Outbox
from gateway.tasks import stop_task

__all__ = ["BoardFeed", "MirrorBoard"]


class _Named(Protocol):
    @property
    def name(self) -> str: ...


class _Bounds(Protocol):
    @property
    def outbox_max_len(self) -> int: ...

    @property
    def outbox_max_age_s(self) -> float: ...


class BoardFeed(Protocol):
    """What the board needs of a mirror feed (:class:`gateway.fanout.mirror.MirrorFeed`)."""

    @property
    def backend(self) -> _Named: ...

    @property
    def settings(self) -> _Bounds: ...

    def backlog(self) -> int: ...

    def backlog_age(self) -> float: ...

    def to_spool(self, spool: list[Any]) -> None: ...

    def to_live(self) -> None: ...

    def kick(self) -> None: ...


class MirrorBoard:
    """The feeds of every mirror of one process. :meth:`close` (after the feeds) at shutdown."""

    def __init__(self, metrics: Metrics, outbox: Outbox, keys: Keys, log: Any) -> None:
        self.metrics = metrics
        self.outbox = outbox
        self.keys = keys
        self.log = log
        self.instance = secrets.token_hex(6)  # this process's spools
        # the circuit breaker, per mirror
        self.next_probe: dict[str, float] = {}
        self.backoff: dict[str, float] = {}
        self.down: set[str] = set()
        self._probing: set[str] = set()  # mirrors whose turn-taking probe is in flight
        self.feeds: dict[str, set[BoardFeed]] = {}
        self._parked: dict[str, list[asyncio.Future[None]]] = {}
        self._down_tasks: dict[str, asyncio.Task[None]] = {}
        self.spools: dict[str, Spool] = {}
        self._ready: dict[str, asyncio.Event] = {}
        self._drains: dict[str, asyncio.Task[None]] = {}
        self._again: set[str] = set()  # a feed started during a drain: look for spools once more after it

    # ------------------------------------------------------------------ feeds

    def register(self, feed: BoardFeed) -> None:
        name = feed.backend.name
        if name not in self.feeds:
            feeds = self.feeds[name] = set()
            # computed at scrape time from the feeds themselves: nothing to update on the message path
            self.metrics.outbox_depth.labels(name).set_function(
                lambda: sum(f.backlog() for f in list(feeds)) + self.spool(name).depth()
            )
            self.metrics.outbox_age.labels(name).set_function(
                lambda: max([f.backlog_age() for f in list(feeds)] + [self.spool(name).age()])
            )
        self.feeds[name].add(feed)
        spool = self.spool(name)
        settings = feed.settings
        spool.raise_bound(settings.outbox_max_len * len(self.feeds[name]), settings.outbox_max_age_s)
        if spool.copies is not None:
            feed.to_spool(spool.copies)

    def unregister(self, feed: BoardFeed) -> None:
        self.feeds.get(feed.backend.name, set()).discard(feed)

    def spool(self, mirror: str) -> Spool:
        spool = self.spools.get(mirror)
        if spool is None:
            spool = self.spools[mirror] = Spool(
                mirror, self.outbox, self.keys, self.instance, self.metrics, self.log, lambda: self._bound(mirror)
            )
        return spool

    def spooling(self, mirror: str) -> list[Any] | None:
        """The list a feed of ``mirror`` appends its copies to while the mirror is down (else None)."""
        spool = self.spools.get(mirror)
        return None if spool is None else spool.copies

    def _bound(self, mirror: str) -> tuple[int, float]:
        """The spool's bounds: room for every feed's outbox bound, the longest age (each charger's own bounds apply
        when its copies are moved)."""
        feeds = self.feeds.get(mirror, ())
        max_len = max((f.settings.outbox_max_len for f in feeds), default=10_000) * max(1, len(feeds))
        max_age = max((f.settings.outbox_max_age_s for f in feeds), default=0.0)
        return max_len, max_age

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
        if self.spooling(mirror) is not None:
            return
        self._again.add(mirror)  # a drain in flight looks once more; a new one starts by forgetting it
        self._start_drain(mirror)

    def _start_drain(self, mirror: str) -> None:
        task = self._drains.get(mirror)
        if task is None or task.done():
            self._event(mirror).clear()
        _ensure_task(self._drains, mirror, self._drain, "spool")

    async def _drain(self, mirror: str) -> None:
        spool = self.spool(mirror)
        delay = 0.5
        while True:
            async with spool.lock:  # no write in flight: it could put copies back into the list
                if spool.copies is not None:
                    if mirror in self.down:
                        return  # down again: the drain after the next successful probe
                    spool.take()  # after closed feeds' copies: those are older
                    for feed in list(self.feeds.get(mirror, ())):
                        feed.to_live()  # new copies go to the feeds' buffers, flushed once ready
            self._again.discard(mirror)
            try:
                if spool.late:
                    await spool.write(spool.late)
                await spool.move_all()
            except StoreUnavailable as e:
                spool.store_failed(e)
                await asyncio.sleep(jitter(delay))
                delay = min(delay * 2, 10.0)
                continue
            spool.store_ok()
            if not spool.late and mirror not in self._again and spool.copies is None:
                break
        spool.drained()
        self._event(mirror).set()
        for feed in list(self.feeds.get(mirror, ())):
            feed.kick()
        self._wake(mirror, everyone=True)

    def _start_spooling(self, mirror: str) -> None:
        spool = self.spool(mirror)
        if spool.copies is not None:
            return
        copies = spool.open()
        self._event(mirror).clear()
        for feed in list(self.feeds.get(mirror, ())):
            feed.to_spool(copies)

    # ------------------------------------------------------------------ parked feeds and probes

    async def park(self, mirror: str) -> None:
        """Wait while ``mirror`` is down: until it is back, or until this feed's turn to probe it."""
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        waiters = self._parked.setdefault(mirror, [])
        waiters.append(fut)
        _ensure_task(self._down_tasks, mirror, self._while_down, "mirror-down")
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

    def probe_failed(self, mirror: str, now: float, reason: str) -> None:
        if mirror in self.down and mirror not in self._probing:
            return  # a feed that tried before the outage was known: one failure, not one back-off step per charger
        self._probing.discard(mirror)
        delay = min(self.backoff.get(mirror, 0.25) * 2, 30.0)
        self.backoff[mirror], self.next_probe[mirror] = delay, now + delay
        if mirror not in self.down:
            self.down.add(mirror)
            self.log.warning("mirror_unreachable", mirror=mirror, reason=reason)
        self._start_spooling(mirror)

    def probe_ok(self, mirror: str) -> None:
        self._probing.discard(mirror)
        self.backoff.pop(mirror, None)
        self.next_probe.pop(mirror, None)
        if mirror in self.down:
            self.down.discard(mirror)
            self.log.info("mirror_reachable", mirror=mirror)
        if self.spooling(mirror) is not None:
            self._start_drain(mirror)  # wakes everyone when done
        else:
            self._wake(mirror, everyone=True)

    def known_down(self, mirror: str, now: float) -> bool:
        """The mirror failed its last probe and the next one is not due: no feed needs to look at it now."""
        return mirror in self.down and now < self.next_probe.get(mirror, 0.0)

    async def close(self) -> None:
        """Stop the board's tasks (the feeds are closed first); what is still spooled in memory is written."""
        for task in list(self._down_tasks.values()) + list(self._drains.values()):
            await stop_task(task)
        self._down_tasks.clear()
        self._drains.clear()
        for spool in self.spools.values():
            await spool.close()


def _ensure_task(
    tasks: dict[str, asyncio.Task[None]], mirror: str, run: Callable[[str], Coroutine[Any, Any, None]], name: str
) -> None:
    """Start ``run(mirror)`` as ``tasks[mirror]`` unless it is running."""
    task = tasks.get(mirror)
    if task is None or task.done():
        tasks[mirror] = asyncio.get_running_loop().create_task(run(mirror), name=f"{name}:{mirror}")
