"""The spool (a down mirror's copies of every charger, one stream per process), on the memory store and a real
redis-server: what is written comes out, moved, in each charger's own outbox, in order, across processes, bounded."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import orjson
import pytest
import structlog
from structlog.testing import capture_logs

from gateway.fanout import spool as spool_module
from gateway.fanout.mirror import unpack
from gateway.fanout.spool import SPOOL_CHUNK, SPOOL_MAX_WAIT_S, Spool
from gateway.metrics import Metrics
from gateway.store import Store, StoreUnavailable, open_store
from gateway.store.keys import Keys
from gateway.store.outbox import Outbox, Packed

MIRROR = "m"


def copy(cid: str, name: str, *, max_len: int = 100, max_age_s: float = 0.0, answer: bool = True) -> list[Any]:
    """One spooled copy as a feed appends it: its tag (charger id and bounds), the action, the CALL, the answer."""
    tag = f"{cid}\x1f{max_len}\x1f{max_age_s!r}\x1f".encode()
    call = f'[2,"{name}","Heartbeat",{{}}]'.encode()
    return [tag, "Heartbeat", call, f'[3,"{name}",{{}}]'.encode() if answer else b""]


def copies(*pairs: tuple[str, str], max_len: int = 100) -> list[Any]:
    """Copies (charger id, name of the copy: its CALL's unique id), flat, in order."""
    flat: list[Any] = []
    for cid, name in pairs:
        flat += copy(cid, name, max_len=max_len)
    return flat


async def next_ms() -> None:
    """Let the clock pass the millisecond of the last write: Redis stream ids (an entry's time, by which spools of
    several processes are moved) have millisecond resolution. Waits for the clock, at most a millisecond."""
    start = int(time.time() * 1000)
    while int(time.time() * 1000) == start:
        await asyncio.sleep(0)


class WatchedOutbox:
    """The store's outbox, telling each spool write (an event) and refusing them on demand: the store boundary."""

    def __init__(self, inner: Outbox) -> None:
        self.inner = inner
        self.down = False
        self.writes = 0
        self.failures = 0
        self.changed = asyncio.Event()
        #: called during a refused write (copies a feed appends while the write is in flight)
        self.meanwhile: Callable[[], None] = lambda: None

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    async def spool_append(self, spool: str, packed: Packed, max_len: int, max_age_s: float, registry: str) -> int:
        try:
            if self.down:
                self.failures += 1
                self.meanwhile()
                raise StoreUnavailable("connection refused")
            trimmed = await self.inner.spool_append(spool, packed, max_len, max_age_s, registry)
            self.writes += 1
            return trimmed
        finally:
            self.changed.set()

    async def until(self, pred: Callable[[], bool]) -> None:
        async with asyncio.timeout(2.0):
            while not pred():
                self.changed.clear()
                await self.changed.wait()

    async def written(self, count: int) -> None:
        await self.until(lambda: self.writes >= count)

    async def refused(self, count: int) -> None:
        await self.until(lambda: self.failures >= count)


@dataclass
class Env:
    outbox: Outbox
    keys: Keys = field(default_factory=lambda: Keys("test"))
    metrics: Metrics = field(default_factory=Metrics)
    spools: list[Spool] = field(default_factory=list)

    def spool(
        self,
        instance: str = "p1",
        *,
        mirror: str = MIRROR,
        bounds: tuple[int, float] = (10_000, 0.0),
        outbox: Any = None,
        log: Any = None,
    ) -> Spool:
        """A process's spool of a mirror (closed after the test)."""
        s = Spool(
            mirror, outbox or self.outbox, self.keys, instance, self.metrics, log or structlog.get_logger(),
            lambda: bounds,
        )  # fmt: skip
        self.spools.append(s)
        return s

    def trimmed(self) -> float:
        sample = self.metrics.registry.get_sample_value
        return sample("ocppgw_mirror_copies_total", {"backend": MIRROR, "result": "trimmed"}) or 0.0

    async def names(self, cid: str) -> list[str]:
        """The unique ids of the copies in the charger's outbox toward MIRROR, oldest first."""
        entries = await self.outbox.read(self.keys.outbox(cid, MIRROR), 10_000)
        return [orjson.loads(unpack(e.data)["c"])[1] for e in entries]

    async def listed(self) -> list[str]:
        """The spools of MIRROR the registry still lists."""
        return await self.outbox.spools(self.keys.mirror_spools(), self.keys.mirror_spool(MIRROR))


@pytest.fixture(params=["memory", "redis"])
async def store(request: pytest.FixtureRequest) -> AsyncIterator[Store]:
    url = "memory://" if request.param == "memory" else request.getfixturevalue("redis_url")
    store = open_store(url, "test")
    yield store
    await store.close()


@pytest.fixture
async def env(store: Store) -> AsyncIterator[Env]:
    e = Env(store.outbox())
    yield e
    for s in e.spools:
        await s.close()


async def test_written_copies_are_moved_into_each_chargers_outbox_in_order(env: Env) -> None:
    spool = env.spool()
    listed = spool.open()
    assert listed == [] and spool.copies is listed and spool.open() is listed  # opened twice: the same list
    listed += copies(("CP1", "a"), ("CP2", "b")) + copy("CP1", "c", answer=False)
    await spool.write(spool.copies)
    assert spool.copies is listed and listed == []  # written: the feeds go on appending to the same list
    listed += copies(("CP2", "d"), ("CP1", "e"))
    await spool.write(spool.copies)
    assert await env.names("CP1") == []  # spooled, not moved yet
    await spool.move_all()
    assert await env.names("CP1") == ["a", "c", "e"]
    assert await env.names("CP2") == ["b", "d"]
    got = [unpack(e.data) for e in await env.outbox.read(env.keys.outbox("CP1", MIRROR), 10)]
    assert got[:2] == [
        {"a": "Heartbeat", "c": b'[2,"a","Heartbeat",{}]', "r": b'[3,"a",{}]'},
        {"a": "Heartbeat", "c": b'[2,"c","Heartbeat",{}]', "r": None},  # the primary gave no answer
    ]
    assert await env.outbox.spool_head(spool.key) is None
    assert await env.listed() == []  # emptied: out of the registry
    assert env.trimmed() == 0


async def test_a_spool_of_another_mirror_stays_where_it_is(env: Env) -> None:
    spool, other = env.spool(), env.spool(mirror="m2")
    other.open().extend(copies(("CP1", "x")))
    await other.write(other.copies or [])
    spool.open().extend(copies(("CP1", "a")))
    await spool.write(spool.copies or [])
    await spool.move_all()
    assert await env.names("CP1") == ["a"]
    assert await env.outbox.read(env.keys.outbox("CP1", "m2"), 10) == []
    assert await env.outbox.spools(env.keys.mirror_spools(), env.keys.mirror_spool("m2")) == [other.key]


async def test_spools_of_two_processes_are_moved_oldest_entry_first(env: Env) -> None:
    # "p2" writes first: the order is the entries' time, not the spools' names
    first, second = env.spool("p2"), env.spool("p1")
    for spool, name in ((first, "a"), (second, "b"), (first, "c"), (second, "d"), (first, "e")):
        spool.open().extend(copies(("CP1", name), ("CP2", name.upper())))
        await spool.write(spool.copies or [])
        await next_ms()
    assert sorted(await env.listed()) == sorted([first.key, second.key])
    # a third process that spooled nothing moves what the others left (stopped or crashed: the same to it)
    await env.spool("p3").move_all()
    assert await env.names("CP1") == ["a", "b", "c", "d", "e"]
    assert await env.names("CP2") == ["A", "B", "C", "D", "E"]
    assert await env.listed() == []


async def test_a_write_of_more_than_SPOOL_CHUNK_copies_becomes_several_entries(env: Env) -> None:
    spool = env.spool()
    n = 2 * SPOOL_CHUNK + 1
    spool.open().extend(copies(*((f"CP{i % 3}", f"c{i}") for i in range(n)), max_len=n))
    await spool.write(spool.copies or [])
    assert spool.depth() == n
    sizes = []
    while (head := await env.outbox.spool_head(spool.key)) is not None:
        sizes.append(len(head.records()))
        batches = spool.split(head)
        assert await env.outbox.spool_move(spool.key, head, batches) == [0] * len(batches)
    assert sizes == [SPOOL_CHUNK, SPOOL_CHUNK, 1]
    for k in range(3):
        assert await env.names(f"CP{k}") == [f"c{i}" for i in range(k, n, 3)]


async def test_the_bound_trims_the_oldest_copies_and_counts_them(env: Env) -> None:
    spool = env.spool(bounds=(3, 0.0))
    spool.open().extend(copies(("CP1", "a"), ("CP1", "b")))
    await spool.write(spool.copies or [])
    assert env.trimmed() == 0
    spool.open().extend(copies(("CP2", "c"), ("CP1", "d"), ("CP2", "e")))
    await spool.write(spool.copies or [])
    assert env.trimmed() == 2  # a and b: the oldest
    assert spool.depth() == 3
    await spool.move_all()
    assert await env.names("CP1") == ["d"]
    assert await env.names("CP2") == ["c", "e"]
    assert env.trimmed() == 2  # nothing more on the way


async def test_raise_bound_makes_room_for_a_feed_that_registered_meanwhile(env: Env) -> None:
    spool = env.spool(bounds=(2, 0.0))
    spool.raise_bound(10, 0.0)  # nothing written yet: the bound is taken at the first write
    spool.open().extend(copies(("CP1", "a"), ("CP1", "b")))
    await spool.write(spool.copies or [])
    spool.raise_bound(3, 0.0)
    spool.raise_bound(1, 0.0)  # never lowered
    spool.open().extend(copies(("CP1", "c"), ("CP1", "d")))
    await spool.write(spool.copies or [])
    assert env.trimmed() == 1
    await spool.move_all()
    assert await env.names("CP1") == ["b", "c", "d"]


async def test_moving_applies_each_chargers_own_bound_and_counts_what_it_trims(env: Env) -> None:
    spool = env.spool()
    spool.open().extend(copies(("CP1", "a"), ("CP2", "b"), ("CP1", "c"), ("CP1", "d"), max_len=2))
    await spool.write(spool.copies or [])
    await spool.move_all()
    assert await env.names("CP1") == ["c", "d"]
    assert await env.names("CP2") == ["b"]
    assert env.trimmed() == 1


async def test_a_failed_write_puts_the_copies_back_in_front_bounded(env: Env) -> None:
    watched = WatchedOutbox(env.outbox)
    spool = env.spool(outbox=watched, bounds=(3, 0.0))
    listed = spool.open()
    listed += copies(("CP1", "a"), ("CP1", "b"))
    watched.down = True
    with pytest.raises(StoreUnavailable):
        await spool.write(listed)
    assert listed == copies(("CP1", "a"), ("CP1", "b"))
    listed += copies(("CP1", "c"))
    watched.meanwhile = lambda: listed.extend(copy("CP1", "d"))  # appended while the write is in flight: after
    with pytest.raises(StoreUnavailable):
        await spool.write(listed)
    assert listed == copies(("CP1", "b"), ("CP1", "c"), ("CP1", "d"))  # the oldest beyond the bound: gone, counted
    assert env.trimmed() == 1
    watched.meanwhile = lambda: None
    watched.down = False
    await spool.write(listed)
    await spool.move_all()
    assert await env.names("CP1") == ["b", "c", "d"]


async def test_depth_and_age(env: Env) -> None:
    spool = env.spool()
    assert spool.depth() == 0 and spool.age() == 0.0
    listed = spool.open()
    listed += copies(("CP1", "a"), ("CP2", "b"))
    assert spool.depth() == 2 and spool.age() == 0.0  # in memory, no time known yet
    await spool.write(listed)
    assert spool.depth() == 2  # written, not moved
    assert spool.age() >= SPOOL_MAX_WAIT_S  # no time known: as old as the oldest copy a write can hold
    spool.spooled_at(time.time() - 60)  # a feed's buffered copies, older, went to the spool
    assert spool.age() >= 60
    spool.spooled_at(time.time())  # a later one does not make the spool younger
    assert spool.age() >= 60
    listed += copies(("CP1", "c"))
    spool.adopt(copies(("CP3", "z")))  # a closed feed's copies: in the list while it is open
    assert spool.depth() == 4
    await spool.write(listed)
    assert spool.depth() == 4
    await spool.move_all()
    spool.drained()
    assert spool.depth() == 0 and spool.age() == 0.0
    assert await env.names("CP1") == ["a", "c"] and await env.names("CP3") == ["z"]


async def test_take_then_write_late_keeps_order(env: Env) -> None:
    spool = env.spool()
    listed = spool.open()
    listed += copies(("CP1", "a"))
    await spool.write(listed)
    listed += copies(("CP1", "b"), ("CP2", "c"))
    async with spool.lock:  # the drain takes the list under the lock
        spool.take()
    assert spool.copies is None and spool.late == copies(("CP1", "b"), ("CP2", "c"))
    assert spool.depth() == 3
    spool.adopt(copies(("CP1", "d")))  # a feed closed after the take: its copies are newer, after the late ones
    await spool.write(spool.late)
    assert spool.late == []
    await spool.move_all()
    spool.drained()
    assert await env.names("CP1") == ["a", "b", "d"]
    assert await env.names("CP2") == ["c"]
    assert spool.depth() == 0
    again = spool.open()  # down again later: a new list
    assert again is not listed and again == []


async def test_copies_adopted_before_the_mirror_went_down_again_stay_first(env: Env) -> None:
    spool = env.spool()
    spool.adopt(copies(("CP1", "a")))  # a feed closed while it could not write its outbox: late, older
    spool.open().extend(copies(("CP1", "b")))  # down again before the writer wrote them
    async with spool.lock:
        spool.take()
    assert spool.late == copies(("CP1", "a"), ("CP1", "b"))
    await spool.write(spool.late)
    await spool.move_all()
    assert await env.names("CP1") == ["a", "b"]


async def test_close_writes_what_is_in_memory_for_the_next_process(env: Env) -> None:
    spool = env.spool("p1")
    spool.adopt(copies(("CP1", "a")))  # a closed feed's copies while nothing was spooling: late, first
    spool.open().extend(copies(("CP1", "b"), ("CP2", "c")))
    await spool.close()
    assert spool.late == [] and spool.copies == []
    await env.spool("p2").move_all()
    assert await env.names("CP1") == ["a", "b"]
    assert await env.names("CP2") == ["c"]


async def test_the_writer_writes_the_list_at_least_every_SPOOL_MAX_WAIT_S(
    env: Env, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(spool_module, "SPOOL_WRITE_S", 0.005)
    monkeypatch.setattr(spool_module, "SPOOL_MAX_WAIT_S", 0.02)
    watched = WatchedOutbox(env.outbox)
    spool = env.spool(outbox=watched)
    spool.open().extend(copies(("CP1", "a"), ("CP1", "b")))
    await watched.written(1)
    assert spool.copies == [] and spool.depth() == 2
    await spool.move_all()
    assert await env.names("CP1") == ["a", "b"]


async def test_the_writer_writes_as_soon_as_SPOOL_CHUNK_copies_wait(env: Env, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(spool_module, "SPOOL_WRITE_S", 0.005)
    monkeypatch.setattr(spool_module, "SPOOL_MAX_WAIT_S", 3600.0)  # only a full chunk makes it write
    watched = WatchedOutbox(env.outbox)
    spool = env.spool(outbox=watched)
    spool.open().extend(copies(*(("CP1", f"c{i}") for i in range(SPOOL_CHUNK)), max_len=SPOOL_CHUNK))
    await watched.written(1)
    assert spool.copies == [] and spool.depth() == SPOOL_CHUNK


def _all_levels() -> Any:
    """A logger that lets every level through to capture_logs (the test session filters below warning)."""
    return structlog.wrap_logger(None, wrapper_class=structlog.make_filtering_bound_logger(logging.DEBUG))


async def test_the_writer_logs_a_store_outage_once_counts_it_and_writes_once_the_store_is_back(
    env: Env, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(spool_module, "SPOOL_WRITE_S", 0.005)
    monkeypatch.setattr(spool_module, "SPOOL_MAX_WAIT_S", 0.0)
    watched = WatchedOutbox(env.outbox)
    with capture_logs() as logs:
        spool = env.spool(outbox=watched, log=_all_levels())
        watched.down = True
        spool.open().extend(copies(("CP1", "a")))
        await watched.refused(3)
        spool.open().extend(copies(("CP1", "b")))
        watched.down = False
        await watched.written(1)
    events = [e for e in logs if e["event"].startswith("mirror_spool")]
    assert [(e["event"], e["log_level"], e["mirror"]) for e in events] == [
        ("mirror_spool_unavailable", "error", MIRROR),
        ("mirror_spool_recovered", "info", MIRROR),
    ]
    sample = env.metrics.registry.get_sample_value
    assert sample("ocppgw_store_errors_total", {"op": "outbox"}) == watched.failures
    await spool.move_all()
    assert await env.names("CP1") == ["a", "b"]


async def test_a_second_store_outage_while_the_mirror_is_still_down_is_logged_again(
    env: Env, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(spool_module, "SPOOL_WRITE_S", 0.005)
    monkeypatch.setattr(spool_module, "SPOOL_MAX_WAIT_S", 0.0)
    watched = WatchedOutbox(env.outbox)
    with capture_logs() as logs:
        spool = env.spool(outbox=watched, log=_all_levels())
        for n, name in enumerate(("a", "b"), start=1):
            watched.down = True
            spool.open().extend(copies(("CP1", name)))
            await watched.refused(2 * n)
            watched.down = False
            await watched.written(n)
    events = [e["event"] for e in logs if e["event"].startswith("mirror_spool")]
    assert events == ["mirror_spool_unavailable", "mirror_spool_recovered"] * 2
