"""Leases and event streams, the two store services taps use, on every Store.

A lease is held by one process of the fleet at a time (with Redis: a key with the holder's node id and a TTL); the
memory store has nobody to share it with and always holds it. ``add_to_stream`` is a tap's ``redis_stream`` sink.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import orjson
import pytest
import redis.asyncio as aioredis

from gateway.store import MemoryStore, Store, StoreUnavailable, open_store


@pytest.fixture
async def redis_store(redis_url: str) -> AsyncIterator[Store]:
    store = open_store(redis_url, "test")
    yield store
    await store.close()


async def test_the_memory_store_always_holds_its_leases_and_shares_none() -> None:
    store = MemoryStore()
    one, two = store.lease("test:tap:t:lease", "n1", 1.0), store.lease("test:tap:t:lease", "n2", 1.0)
    assert not one.shared
    assert await one.hold() and await two.hold()
    await one.release()
    assert await one.hold()


async def test_one_holder_at_a_time_and_the_holder_extends_it(redis_store: Store) -> None:
    one = redis_store.lease("test:tap:a:lease", "n1", 30.0)
    two = redis_store.lease("test:tap:a:lease", "n2", 30.0)
    assert one.shared
    assert await one.hold()
    assert not await two.hold()
    assert await one.hold()  # extended by its holder
    assert not await two.hold()


async def test_a_released_lease_goes_to_the_next_and_only_the_holder_releases(redis_store: Store) -> None:
    one = redis_store.lease("test:tap:b:lease", "n1", 30.0)
    two = redis_store.lease("test:tap:b:lease", "n2", 30.0)
    assert await one.hold()
    await two.release()  # not the holder: nothing happens
    assert not await two.hold()
    await one.release()
    assert await two.hold()
    assert not await one.hold()


async def test_a_lease_its_holder_stops_extending_lapses(redis_store: Store) -> None:
    one = redis_store.lease("test:tap:c:lease", "n1", 0.1)
    two = redis_store.lease("test:tap:c:lease", "n2", 0.1)
    assert await one.hold()
    async with asyncio.timeout(2):
        while not await two.hold():
            await asyncio.sleep(0.02)  # polling the store: the TTL is Redis's clock, not ours
    assert not await one.hold()


async def test_events_are_appended_to_the_stream_in_order_and_trimmed(redis_url: str, redis_store: Store) -> None:
    events = [orjson.dumps({"n": i}) for i in range(5)]
    await redis_store.add_to_stream("test-events", events, 1000)
    client = aioredis.from_url(redis_url)
    try:
        rows = await client.xrange("test-events")
        assert [orjson.loads(f[b"event"])["n"] for _, f in rows] == [0, 1, 2, 3, 4]
    finally:
        await client.aclose()


async def test_the_memory_store_has_no_event_stream() -> None:
    with pytest.raises(StoreUnavailable, match="Redis"):
        await MemoryStore().add_to_stream("events", [b"{}"], 10)
