"""Outboxes (mirror copies, taps): one contract, memory and a real redis-server."""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import AsyncIterator
from typing import Any

import orjson
import pytest

from gateway.store import open_store
from gateway.store.memory import MemoryOutbox
from gateway.store.outbox import Entry, Outbox, Packed


@pytest.fixture(params=["memory", "redis"])
async def outbox(request: pytest.FixtureRequest) -> AsyncIterator[Outbox]:
    url = "memory://" if request.param == "memory" else request.getfixturevalue("redis_url")
    store = open_store(url, "test")
    yield store.outbox()
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
    results = [
        await outbox.append(s, [b"StatusNotification\x1f{}\x1f"], 100, 0),
        await outbox.append("test:{CP9}:outbox:x", [], 100, 0),
    ]
    assert results == [0, 0]
    assert [e.data for e in await outbox.read(s, 10)] == [*records, {"n": 1}, b"StatusNotification\x1f{}\x1f"]


async def test_each_stream_is_trimmed_by_its_own_bound(outbox: Outbox) -> None:
    a, b = "test:{CP10}:outbox:m", "test:{CP11}:outbox:m"
    results = [await outbox.append(a, [b"x%d" % i for i in range(5)], 3, 0), await outbox.append(b, [b"y"], 3, 0)]
    assert results == [2, 0]
    assert [e.data for e in await outbox.read(a, 10)] == [b"x2", b"x3", b"x4"]
    assert [e.data for e in await outbox.read(b, 10)] == [b"y"]


async def test_packed_mirror_copies_come_back_one_entry_each(outbox: Outbox) -> None:
    """A mirror feed's buffer (action, CALL frame, answer frame; flat) packed in one join, appended as one argument:
    each copy is its own entry, in order, and unpacks to what the session handed over."""
    from collections import deque

    from gateway.fanout.mirror import pack, unpack

    s = "test:{CP12}:outbox:m"
    flat = deque(
        [
            "BootNotification", b'[2,"1","BootNotification",{"chargePointVendor":"V"}]', b'[3,"1",{"status":"Ok"}]',
            "Heartbeat", b'[2,"2","Heartbeat",{}]', b"",
            "MeterValues", b'[2,"3","MeterValues",{"connectorId":1,"meterValue":[]}]', b'[3,"3",{}]',
        ]
    )  # fmt: skip
    packed = pack(flat)
    assert packed.count == 3
    assert await outbox.append(s, packed, 2, 0) == 1  # bounded like any append: the oldest goes, counted
    got = [unpack(e.data) for e in await outbox.read(s, 10)]
    assert got == [
        {"a": "Heartbeat", "c": b'[2,"2","Heartbeat",{}]', "r": None},
        {"a": "MeterValues", "c": b'[2,"3","MeterValues",{"connectorId":1,"meterValue":[]}]', "r": b'[3,"3",{}]'},
    ]
    assert pack(deque()).count == 0
    assert [await outbox.append(s, pack(deque()), 2, 0)] == [0]
    assert len(await outbox.read(s, 10)) == 2


def _copies(*names: str) -> Packed:
    from gateway.fanout.mirror import pack

    flat: deque[Any] = deque()
    for name in names:
        flat += (name, f'[2,"{name}","Heartbeat",{{}}]'.encode(), b"")
    return pack(flat)


def _names(entries: list[Entry]) -> list[str]:
    from gateway.fanout.mirror import unpack

    return [orjson.loads(unpack(e.data)["c"])[1] for e in entries]


async def test_bounds_count_copies_not_batches(outbox: Outbox) -> None:
    """A batch of copies is trimmed copy by copy: the length bound keeps exactly the newest max_len copies."""
    s = "test:{CP13}:outbox:m"
    assert await outbox.append(s, _copies("a", "b", "c"), 4, 0) == 0
    assert await outbox.append(s, _copies("d", "e", "f"), 4, 0) == 2
    assert _names(await outbox.read(s, 10)) == ["c", "d", "e", "f"]
    assert (await outbox.stats(s))[0] == 4
    assert await outbox.append(s, _copies("g"), 2, 0) == 3  # c, d and e go: the whole first batch and one more
    assert _names(await outbox.read(s, 10)) == ["f", "g"]


async def test_acknowledging_copies_inside_a_batch(outbox: Outbox) -> None:
    """Delivery acknowledges one copy at a time: what is acknowledged never comes back, the rest comes in order,
    also through a new outbox object (a restarted gateway)."""
    s = "test:{CP14}:outbox:m"
    await outbox.append(s, _copies("a", "b", "c"), 100, 0)
    await outbox.append(s, _copies("d", "e"), 100, 0)
    first = await outbox.read(s, 2)
    assert _names(first) == ["a", "b"]
    await outbox.ack(s, [first[0].id])
    await outbox.ack(s, [first[1].id])
    assert (await outbox.stats(s))[0] == 3
    assert _names(await outbox.read(s, 10)) == ["c", "d", "e"]
    again = outbox if isinstance(outbox, MemoryOutbox) else type(outbox)(outbox._r)  # type: ignore[attr-defined]
    rest = await again.read(s, 10)
    assert _names(rest) == ["c", "d", "e"]
    for e in rest:
        await again.ack(s, [e.id])
    assert await again.read(s, 10) == []
    assert await again.stats(s) == (0, None)
    await again.ack(s, [rest[0].id])  # acknowledged twice (an answer that came back late): nothing happens
    await again.append(s, _copies("f"), 100, 0)
    assert _names(await again.read(s, 10)) == ["f"]


async def test_age_bound_drops_old_batches_and_counts_their_copies(outbox: Outbox) -> None:
    s = "test:{CP15}:outbox:m"
    await outbox.append(s, _copies("a", "b"), 100, 0)
    await asyncio.sleep(0.05)
    assert await outbox.append(s, _copies("c"), 100, 0.02) == 2
    assert _names(await outbox.read(s, 10)) == ["c"]


async def test_copies_queued_one_entry_each_by_an_older_gateway_still_arrive_first(redis_url: str) -> None:
    """An upgrade with copies queued: entries written one per copy (field ``d``, no meta hash) come out before the
    batches appended after them, are acknowledged one by one, and count towards the bound."""
    store = open_store(redis_url, "test")
    try:
        outbox = store.outbox()
        s = "test:{CP16}:outbox:m"
        r = store._r  # type: ignore[attr-defined]
        for name in ("old1", "old2"):
            await r.xadd(s, {"d": f'Heartbeat\x1f[2,"{name}","Heartbeat",{{}}]\x1f'.encode()})
        assert (await outbox.stats(s))[0] == 2
        assert await outbox.append(s, _copies("new1", "new2"), 3, 0) == 1
        got = await outbox.read(s, 10)
        assert _names(got) == ["old2", "new1", "new2"]
        await outbox.ack(s, [got[0].id])
        assert (await outbox.stats(s))[0] == 2
        assert _names(await outbox.read(s, 10)) == ["new1", "new2"]
    finally:
        await store.close()


def _spooled(*pairs: tuple[str, str]) -> Packed:
    """Spool records (charger id, copy name), as a down mirror's board writes them."""
    from gateway.fanout.spool import pack_spool

    flat: list[Any] = []
    for cid, name in pairs:
        flat += (f"{cid}\x1f100\x1f0.0\x1f".encode(), "Heartbeat", f'[2,"{name}","Heartbeat",{{}}]'.encode(), b"")
    return pack_spool(flat)


def _by_charger(entry: Any) -> list[tuple[str, Packed, int, float]]:
    groups: dict[str, list[bytes]] = {}
    for record in entry.records():
        cid, _, _, copy = record.split(b"\x1f", 3)
        groups.setdefault(cid.decode(), []).append(copy)
    return [(f"test:{{{c}}}:outbox:m", Packed(b"\x1e".join(v), len(v)), 100, 0.0) for c, v in groups.items()]


async def test_a_spool_entry_moves_into_each_chargers_outbox_once(outbox: Outbox) -> None:
    spool, registry = "test:mirror-spool:m:p1", "test:mirror-spools"
    assert await outbox.spool_append(spool, _spooled(("S1", "a"), ("S2", "b"), ("S1", "c")), 100, 0, registry) == 0
    assert await outbox.spool_append(spool, _spooled(("S2", "d")), 100, 0, registry) == 0
    assert await outbox.spools(registry, "test:mirror-spool:m:") == [spool]
    assert await outbox.spools(registry, "test:mirror-spool:other:") == []
    first = await outbox.spool_head(spool)
    assert first is not None and first.skip == 0 and len(first.records()) == 3
    assert await outbox.spool_move(spool, first, _by_charger(first)) == [0, 0]
    assert await outbox.spool_move(spool, first, _by_charger(first)) is None  # moved already: nothing twice
    second = await outbox.spool_head(spool)
    assert second is not None and second.id != first.id
    await outbox.spool_forget(registry, spool)  # not empty: stays listed
    assert await outbox.spools(registry, "test:mirror-spool:m:") == [spool]
    assert await outbox.spool_move(spool, second, _by_charger(second)) == [0]
    assert await outbox.spool_head(spool) is None
    await outbox.spool_forget(registry, spool)
    assert await outbox.spools(registry, "test:mirror-spool:m:") == []
    assert _names(await outbox.read("test:{S1}:outbox:m", 10)) == ["a", "c"]
    assert _names(await outbox.read("test:{S2}:outbox:m", 10)) == ["b", "d"]
    assert (await outbox.stats("test:{S2}:outbox:m"))[0] == 2


async def test_spool_bound_counts_copies_and_a_move_takes_only_what_is_left(outbox: Outbox) -> None:
    spool, registry = "test:mirror-spool:m:p2", "test:mirror-spools"
    await outbox.spool_append(spool, _spooled(("S3", "a"), ("S3", "b")), 3, 0, registry)
    assert await outbox.spool_append(spool, _spooled(("S3", "c"), ("S3", "d")), 3, 0, registry) == 1
    head = await outbox.spool_head(spool)
    assert head is not None and head.skip == 1
    assert await outbox.spool_move(spool, head, _by_charger(head)) == [0]
    head = await outbox.spool_head(spool)
    assert head is not None
    assert await outbox.spool_move(spool, head, _by_charger(head)) == [0]
    assert _names(await outbox.read("test:{S3}:outbox:m", 10)) == ["b", "c", "d"]


async def test_moved_copies_keep_their_spool_time_for_the_age_bound(outbox: Outbox) -> None:
    spool, registry = "test:mirror-spool:m:p3", "test:mirror-spools"
    await outbox.spool_append(spool, _spooled(("S4", "old")), 100, 0, registry)
    await asyncio.sleep(0.2)
    await outbox.spool_append(spool, _spooled(("S4", "new")), 100, 0, registry)
    old = await outbox.spool_head(spool)
    assert old is not None
    assert await outbox.spool_move(spool, old, [(s, p, n, 0.1) for s, p, n, _ in _by_charger(old)]) == [1]
    new = await outbox.spool_head(spool)
    assert new is not None
    assert await outbox.spool_move(spool, new, _by_charger(new)) == [0]
    s = "test:{S4}:outbox:m"
    assert _names(await outbox.read(s, 10)) == ["new"]
    depth, age = await outbox.stats(s)
    assert depth == 1 and age is not None and age < 0.2
