"""Outboxes (mirror copies, taps): one contract, memory and a real redis-server."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from gateway.store import open_store
from gateway.store.outbox import Outbox, open_outbox


@pytest.fixture(params=["memory", "redis"])
async def outbox(request: pytest.FixtureRequest) -> AsyncIterator[Outbox]:
    url = "memory://" if request.param == "memory" else request.getfixturevalue("redis_url")
    store = open_store(url, "test")
    yield open_outbox(store)
    await store.close()


async def test_entries_come_back_in_order_until_acknowledged(outbox: Outbox) -> None:
    s = "test:{CP1}:outbox:m"
    assert await outbox.append(s, [{"n": 1}, {"n": 2}], 100, 0) == 0
    assert await outbox.append(s, [{"n": 3}], 100, 0) == 0
    got = await outbox.read(s, 10)
    assert [e.data for e in got] == [{"n": 1}, {"n": 2}, {"n": 3}]
    await outbox.ack(s, [got[0].id])
    assert [e.data for e in await outbox.read(s, 10)] == [{"n": 2}, {"n": 3}]
    depth, age = await outbox.stats(s)
    assert depth == 2 and age is not None and age >= 0
    assert await outbox.streams("test:{CP1}") == [s]


async def test_length_bound_trims_the_oldest_and_says_how_many(outbox: Outbox) -> None:
    s = "test:{CP2}:outbox:m"
    assert await outbox.append(s, [{"n": i} for i in range(5)], 3, 0) == 2
    assert [e.data["n"] for e in await outbox.read(s, 10)] == [2, 3, 4]


async def test_empty_outbox(outbox: Outbox) -> None:
    assert await outbox.read("test:{none}:outbox:m", 5) == []
    assert await outbox.stats("test:{none}:outbox:m") == (0, None)


async def test_bytes_entries_come_back_as_they_were(outbox: Outbox) -> None:
    """Mirror copies are opaque records (fields joined by 0x1F): kept byte for byte, in order, mixed with JSON."""
    s = "test:{CP9}:outbox:m"
    records = [b'Heartbeat\x1f[2,"1","Heartbeat",{}]\x1f[3,"1",{}]', b'Authorize\x1f[2,"2","Authorize",{}]\x1f']
    assert await outbox.append(s, records, 100, 0) == 0
    assert await outbox.append(s, [{"n": 1}], 100, 0) == 0
    results = await outbox.append_many(
        [(s, [b"StatusNotification\x1f{}\x1f"], 100, 0), ("test:{CP9}:outbox:x", [], 100, 0)]
    )
    assert results == [0, 0]
    assert [e.data for e in await outbox.read(s, 10)] == [*records, {"n": 1}, b"StatusNotification\x1f{}\x1f"]


async def test_append_many_trims_each_stream_by_its_own_bound(outbox: Outbox) -> None:
    a, b = "test:{CP10}:outbox:m", "test:{CP11}:outbox:m"
    results = await outbox.append_many([(a, [b"x%d" % i for i in range(5)], 3, 0), (b, [b"y"], 3, 0)])
    assert results == [2, 0]
    assert [e.data for e in await outbox.read(a, 10)] == [b"x2", b"x3", b"x4"]
    assert [e.data for e in await outbox.read(b, 10)] == [b"y"]
