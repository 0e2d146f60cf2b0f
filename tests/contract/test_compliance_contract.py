"""The compliance report's counters, one contract for every Store (memory and a real redis-server)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from gateway.store import Store, open_store
from gateway.store.compliance import OVERFLOW, ModelCounts

ACME = ("ACME", "X1", "1.2.3")
OTHER = ("Other Co", "Y/2 \u00e9", "")


@pytest.fixture(params=["memory", "redis"])
async def store(request: pytest.FixtureRequest) -> AsyncIterator[Store]:
    url = "memory://" if request.param == "memory" else request.getfixturevalue("redis_url")
    s = open_store(url, "test")
    yield s
    await s.close()


def batch(chargers: set[str], **counts: int) -> ModelCounts:
    return ModelCounts(set(chargers), {f'["{k}"]': v for k, v in counts.items()})


async def test_batches_add_up_per_model(store: Store) -> None:
    c = store.compliance()
    assert await c.read() == {}
    await c.add({ACME: batch({"CP1"}, messages=10, checked=2), OTHER: batch({"CP9"}, messages=1)}, 100)
    await c.add({ACME: batch({"CP1", "CP2"}, messages=5)}, 100)  # another replica, say
    got = await c.read()
    assert set(got) == {ACME, OTHER}
    assert (got[ACME].chargers, dict(got[ACME].counts)) == (2, {'["messages"]': 15, '["checked"]': 2})
    assert (got[OTHER].chargers, dict(got[OTHER].counts)) == (1, {'["messages"]': 1})


async def test_a_model_keeps_a_bounded_number_of_counters(store: Store) -> None:
    c = store.compliance()
    await c.add({ACME: batch(set(), messages=1, a=1, b=1)}, 3)
    await c.add({ACME: batch(set(), a=1, c=5, d=2, messages=1, checked=1)}, 3)
    counts = dict((await c.read())[ACME].counts)
    # a and b fit, c and d go to the overflow; messages and checked are kept whatever the bound
    assert counts == {'["messages"]': 2, '["a"]': 2, '["b"]': 1, OVERFLOW: 7, '["checked"]': 1}


async def test_a_model_seen_without_counts_is_listed(store: Store) -> None:
    c = store.compliance()
    await c.add({ACME: ModelCounts({"CP1"})}, 10)
    got = await c.read()
    assert got[ACME].chargers == 1 and dict(got[ACME].counts) == {}


async def test_reset_forgets_every_model(store: Store) -> None:
    c = store.compliance()
    await c.add({ACME: batch({"CP1"}, messages=1)}, 10)
    await c.clear()
    assert await c.read() == {}
    await c.add({ACME: batch({"CP2"}, messages=1)}, 10)
    assert (await c.read())[ACME].chargers == 1
