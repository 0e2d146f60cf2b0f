"""One contract, every Store: memory and a real redis-server."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from gateway.metrics import Metrics
from gateway.store import StateWriter, Store, StoreUnavailable, Write, open_store


@pytest.fixture(params=["memory", "redis"])
async def store(request: pytest.FixtureRequest) -> AsyncIterator[Store]:
    url = "memory://" if request.param == "memory" else request.getfixturevalue("redis_url")
    s = open_store(url, "test")
    yield s
    await s.close()


async def test_connection_is_listed_until_deleted(store: Store) -> None:
    await store.apply(
        [Write("conn", "CP1", "", {"node": "n1", "since": 1.5}), Write("conn", "CP2", "", {"node": "n2"})]
    )
    assert await store.get_connection("CP1") == {"node": "n1", "since": 1.5}
    assert set(await store.list_connections()) == {"CP1", "CP2"}
    await store.apply([Write("conn", "CP1", "", None)])
    assert await store.get_connection("CP1") is None
    assert set(await store.list_connections()) == {"CP2"}


async def test_boot_and_statuses_keep_the_latest(store: Store) -> None:
    await store.apply(
        [
            Write("boot", "CP/é 1", "", {"request": {"chargePointModel": "A"}}),
            Write("status", "CP/é 1", "1", {"connectorId": 1, "status": "Preparing"}),
            Write("status", "CP/é 1", "1", {"connectorId": 1, "status": "Charging"}),
            Write("status", "CP/é 1", "0", {"connectorId": 0, "status": "Available"}),
        ]
    )
    assert await store.get_boot("CP/é 1") == {"request": {"chargePointModel": "A"}}
    assert await store.get_statuses("CP/é 1") == {
        "1": {"connectorId": 1, "status": "Charging"},
        "0": {"connectorId": 0, "status": "Available"},
    }
    assert await store.get_statuses("other") == {}
    assert await store.get_boot("other") is None


async def test_translation_state_is_per_backend(store: Store) -> None:
    await store.apply([Write("tx", "CP1", "a", {"next": 3}), Write("tx", "CP1", "b", {"next": 7})])
    assert await store.get_translation_state("CP1", "a") == {"next": 3}
    assert await store.get_translation_state("CP1", "b") == {"next": 7}
    await store.apply([Write("tx", "CP1", "a", None)])
    assert await store.get_translation_state("CP1", "a") is None


async def test_values_are_copies_not_aliases(store: Store) -> None:
    value = {"node": "n1", "nested": {"x": 1}}
    await store.apply([Write("conn", "CP1", "", value)])
    value["nested"]["x"] = 2
    got = await store.get_connection("CP1")
    assert got == {"node": "n1", "nested": {"x": 1}}


async def test_ping_answers(store: Store) -> None:
    await store.ping()


async def test_unreachable_redis_raises_store_unavailable() -> None:
    s = open_store("redis://127.0.0.1:1/0")
    with pytest.raises(StoreUnavailable):
        await s.ping()
    with pytest.raises(StoreUnavailable):
        await s.apply([Write("conn", "CP1", "", {"node": "n"})])
    with pytest.raises(StoreUnavailable):
        await s.list_connections()
    await s.close()


async def test_writer_coalesces_and_flushes(store: Store) -> None:
    m = Metrics()
    w = StateWriter(store, m, max_pending=10)
    w.start()
    for i in range(5):
        w.put(Write("status", "CP1", "1", {"status": f"s{i}"}))
    assert await w.flush(5)
    assert await store.get_statuses("CP1") == {"1": {"status": "s4"}}
    await w.close()
