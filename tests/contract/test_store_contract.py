"""One contract, every Store: memory and a real redis-server."""

from __future__ import annotations

import asyncio
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
    assert await store.claim_owner("CP1", "n1", 30) is None
    assert await store.claim_owner("CP2", "n2", 30) is None
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


async def test_a_translation_state_written_as_json_text_reads_back_as_the_same_state(store: Store) -> None:
    # the translating relay writes a state as its JSON text; a dict written before (or by a mirror) reads the same
    await store.apply([Write("tx", "CP1", "a", b'{"next":3,"transactions":{"5":{"seq_no":2}}}')])
    assert await store.get_translation_state("CP1", "a") == {"next": 3, "transactions": {"5": {"seq_no": 2}}}
    await store.apply([Write("tx", "CP1", "a", {"next": 4})])
    assert await store.get_translation_state("CP1", "a") == {"next": 4}


async def test_a_site_document_keeps_each_field_until_it_is_deleted(store: Store) -> None:
    await store.apply(
        [
            Write("site", "depot", "charger:CP/é 1", {"connected": True, "evses": {"1": {"tx": "7"}}}),
            Write("site", "depot", "event:dr-1", {"id": "dr-1", "limit": 60.0}),
            Write("site", "depot", "charger:CP/é 1", {"connected": False, "evses": {}}),
            Write("site", "other", "summary", {"limit": 1}),
        ]
    )
    assert await store.get_site("depot") == {
        "charger:CP/é 1": {"connected": False, "evses": {}},
        "event:dr-1": {"id": "dr-1", "limit": 60.0},
    }
    await store.apply([Write("site", "depot", "event:dr-1", None)])
    assert await store.get_site("depot") == {"charger:CP/é 1": {"connected": False, "evses": {}}}
    assert await store.get_site("nowhere") == {}


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


async def test_credentials_are_kept_per_charger_and_per_backend(store: Store) -> None:
    await store.apply(
        [
            Write("cred", "CP/é 1", "", {"hash": "scrypt$16384$8$1$c2FsdA==$aGFzaA=="}),
            Write("upcred", "CP/é 1", "csms-a", {"password": "up-a"}),
            Write("upcred", "CP/é 1", "csms-b", {"password": "up-b"}),
        ]
    )
    assert await store.get_password_hash("CP/é 1") == "scrypt$16384$8$1$c2FsdA==$aGFzaA=="
    assert await store.get_upstream_password("CP/é 1", "csms-a") == "up-a"
    assert await store.get_upstream_password("CP/é 1", "csms-b") == "up-b"
    assert await store.get_password_hash("other") is None
    assert await store.get_upstream_password("other", "csms-a") is None
    await store.apply([Write("cred", "CP/é 1", "", None), Write("upcred", "CP/é 1", "csms-a", None)])
    assert await store.get_password_hash("CP/é 1") is None
    assert await store.get_upstream_password("CP/é 1", "csms-a") is None
    assert await store.get_upstream_password("CP/é 1", "csms-b") == "up-b"


async def test_password_hash_and_proof_come_together_and_the_proof_goes_with_the_credentials(store: Store) -> None:
    h = "scrypt$16384$8$1$c2FsdA==$aGFzaA=="
    assert await store.get_password_hash_and_proof("CP/é 1", 60) == (None, None)
    await store.apply([Write("cred", "CP/é 1", "", {"hash": h})])
    assert await store.get_password_hash_and_proof("CP/é 1", 60) == (h, None)
    proof = bytes(range(32))
    await store.put_password_proof("CP/é 1", proof, 60)
    assert await store.get_password_hash_and_proof("CP/é 1", 60) == (h, proof)
    assert await store.get_password_hash_and_proof("other", 60) == (None, None)
    # a new hash (rotation) leaves the proof in place: it no longer matches, which the verifier sees
    await store.apply([Write("cred", "CP/é 1", "", {"hash": h + "x"})])
    assert await store.get_password_hash_and_proof("CP/é 1", 60) == (h + "x", proof)
    # deleting the credentials deletes the proof
    await store.apply([Write("cred", "CP/é 1", "", None)])
    assert await store.get_password_hash_and_proof("CP/é 1", 60) == (None, None)
    await store.apply([Write("cred", "CP/é 1", "", {"hash": h})])
    assert await store.get_password_hash_and_proof("CP/é 1", 60) == (h, None)


async def test_password_proof_expires_unless_read_again(store: Store) -> None:
    await store.apply([Write("cred", "CP1", "", {"hash": "scrypt$1$1$1$a$b"}), Write("cred", "CP2", "", {"hash": "h"})])
    await store.put_password_proof("CP1", b"p" * 32, 0.4)
    await store.put_password_proof("CP2", b"q" * 32, 0.4)
    assert (await store.get_password_hash_and_proof("CP2", 60))[1] == b"q" * 32  # read: 60 s from now on
    await asyncio.sleep(0.6)
    assert await store.get_password_hash_and_proof("CP1", 60) == ("scrypt$1$1$1$a$b", None)
    assert await store.get_password_hash_and_proof("CP2", 60) == ("h", b"q" * 32)


async def test_a_storm_of_concurrent_reads_waits_for_connections_instead_of_failing(store: Store) -> None:
    """A reconnect storm: hundreds of admissions read at once (redis-py's default pool failed the 101st)."""
    await store.apply([Write("cred", f"CP{i}", "", {"hash": f"h{i}"}) for i in range(500)])
    got = await asyncio.gather(*(store.get_password_hash_and_proof(f"CP{i}", 60) for i in range(500)))
    assert got == [(f"h{i}", None) for i in range(500)]


async def test_an_admission_storm_of_mixed_reads_and_claims_gets_each_its_own_answer(store: Store) -> None:
    """What hundreds of admissions issue at once (the Redis store sends them as shared pipelines): every reply
    reaches the read or claim that asked for it."""
    n = 300
    await store.apply([Write("cred", f"CP{i}", "", {"hash": f"h{i}"}) for i in range(0, n, 2)])
    await store.apply([Write("route", f"CP{i}", "", {"primary": f"b{i}"}) for i in range(0, n, 3)])
    for i in range(0, n, 5):
        await store.claim_owner(f"CP{i}", f"old{i}", 30)
    await store.put_password_proof("CP4", b"p" * 32, 60)
    creds, routes, claims = await asyncio.gather(
        asyncio.gather(*(store.get_password_hash_and_proof(f"CP{i}", 60) for i in range(n))),
        asyncio.gather(*(store.get_route_override(f"CP{i}") for i in range(n))),
        asyncio.gather(*(store.claim_owner(f"CP{i}", "new", 30) for i in range(n))),
    )
    assert creds == [((f"h{i}" if i % 2 == 0 else None), (b"p" * 32 if i == 4 else None)) for i in range(n)]
    assert routes == [({"primary": f"b{i}"} if i % 3 == 0 else None) for i in range(n)]
    assert claims == [(f"old{i}" if i % 5 == 0 else None) for i in range(n)]
    assert await asyncio.gather(*(store.get_owner(f"CP{i}") for i in range(n))) == ["new"] * n


async def test_a_redis_reply_that_is_an_error_fails_only_the_read_it_answers(redis_url: str) -> None:
    """A key of the wrong type (written by something else) fails its own read with StoreUnavailable; the reads
    sent in the same pipeline get their answers."""
    import redis.asyncio as aioredis

    store = open_store(redis_url, "wrongtype")
    raw = aioredis.Redis.from_url(redis_url)
    try:
        await store.apply([Write("cred", f"CP{i}", "", {"hash": f"h{i}"}) for i in range(4)])
        await raw.delete("wrongtype:{CP2}:cred")
        await raw.lpush("wrongtype:{CP2}:cred", b"x")
        got = await asyncio.gather(
            *(store.get_password_hash_and_proof(f"CP{i}", 60) for i in range(4)), return_exceptions=True
        )
        assert [g if not isinstance(g, Exception) else type(g) for g in got] == [
            ("h0", None), ("h1", None), StoreUnavailable, ("h3", None)
        ]  # fmt: skip
        assert "WRONGTYPE" in str(got[2])
    finally:
        await raw.aclose()
        await store.close()


async def test_an_unreachable_redis_fails_every_read_waiting_in_a_pipeline() -> None:
    store = open_store("redis://127.0.0.1:1/0", "gone")
    got = await asyncio.gather(*(store.get_route_override(f"CP{i}") for i in range(50)), return_exceptions=True)
    assert all(isinstance(g, StoreUnavailable) for g in got)
    with pytest.raises(StoreUnavailable):
        await store.claim_owner("CP1", "n", 30)
    await store.close()


async def test_claiming_a_charger_returns_its_previous_owner(store: Store) -> None:
    assert await store.claim_owner("CP1", "A", 30) is None
    assert await store.get_owner("CP1") == "A"
    assert await store.claim_owner("CP1", "B", 30) == "A"
    assert await store.get_owner("CP1") == "B"
    assert await store.get_owner("other") is None


async def test_refresh_keeps_own_chargers_and_reports_the_ones_taken_over(store: Store) -> None:
    await store.claim_owner("CP1", "A", 30)
    await store.claim_owner("CP2", "A", 30)
    await store.claim_owner("CP2", "B", 30)
    assert await store.refresh_owners("A", ["CP1", "CP2", "CP3"], 30) == ["CP2"]
    assert await store.get_owner("CP1") == "A"
    assert await store.get_owner("CP2") == "B"
    assert await store.get_owner("CP3") == "A"  # expired or never claimed: claimed again by its live session
    assert await store.refresh_owners("A", [], 30) == []


async def test_refreshing_a_large_fleet_reports_every_charger_taken_over(store: Store) -> None:
    """Thousands of chargers on one node (the Redis store refreshes them in several pipelines): a charger another
    node took is reported wherever it sits in the list, and every other one stays ours."""
    ids = [f"CP{i:04d}" for i in range(1000)]
    for cid in ids:
        await store.claim_owner(cid, "A", 30)
    taken = [ids[i] for i in (0, 255, 256, 257, 511, 512, 999)]
    for cid in taken:
        await store.claim_owner(cid, "B", 30)
    assert await store.refresh_owners("A", ids, 30) == taken
    owners = await asyncio.gather(*(store.get_owner(cid) for cid in ids))
    assert [cid for cid, owner in zip(ids, owners, strict=True) if owner != "A"] == taken


async def test_ownership_expires_and_the_fleet_list_drops_the_charger(store: Store) -> None:
    await store.claim_owner("CP1", "dead", 0.2)
    await store.claim_owner("CP2", "alive", 30)
    await store.apply([Write("conn", "CP1", "", {"node": "dead"}), Write("conn", "CP2", "", {"node": "alive"})])
    assert set(await store.list_connections()) == {"CP1", "CP2"}
    async with asyncio.timeout(5):
        while await store.get_owner("CP1") is not None:
            await asyncio.sleep(0.05)
    assert set(await store.list_connections()) == {"CP2"}


async def test_release_by_a_former_owner_keeps_the_new_owners_records(store: Store) -> None:
    await store.claim_owner("CP1", "A", 30)
    await store.apply([Write("conn", "CP1", "", {"node": "A"})])
    await store.claim_owner("CP1", "B", 30)
    await store.apply([Write("conn", "CP1", "", {"node": "B"})])
    await store.apply([Write("conn", "CP1", "A", None)])  # A's late disconnect
    assert await store.get_owner("CP1") == "B"
    assert await store.get_connection("CP1") == {"node": "B"}
    assert set(await store.list_connections()) == {"CP1"}
    await store.apply([Write("conn", "CP1", "B", None)])
    assert await store.get_owner("CP1") is None
    assert await store.get_connection("CP1") is None
    assert await store.list_connections() == {}


async def test_messages_reach_the_subscribed_node_only(store: Store) -> None:
    sub = await store.subscribe("A")
    try:
        assert await store.publish("A", b"hello") == 1
        assert await store.publish("B", b"nobody") == 0
        assert await sub.get(5) == b"hello"
        assert await sub.get(0.05) is None
    finally:
        await sub.close()
    assert await store.publish("A", b"gone") == 0


async def test_route_overrides_are_kept_listed_and_removed(store: Store) -> None:
    await store.apply(
        [
            Write("route", "CP1", "", {"primary": "b", "mirrors": ["a"]}),
            Write("route", "CP2", "", {"primary": "a", "mirrors": []}),
        ]
    )
    assert await store.get_route_override("CP1") == {"primary": "b", "mirrors": ["a"]}
    assert set(await store.list_route_overrides()) == {"CP1", "CP2"}
    await store.apply([Write("route", "CP1", "", None)])
    assert await store.get_route_override("CP1") is None
    assert set(await store.list_route_overrides()) == {"CP2"}


async def test_ride_state_and_auth_cache_keep_each_field_until_deleted(store: Store) -> None:
    await store.apply(
        [
            Write("ride", "CP/é 1", "csms|boot", {"interval": 300}),
            Write("ride", "CP/é 1", "csms|tx:-5", {"csms": 1001}),
            Write("rideauth", "csms", "TAG-1", {"info": {"status": "Accepted"}, "at": 1.5}),
            Write("rideauth", "csms", "ISO14443:T2", {"info": {"status": "Blocked"}, "at": 2.0}),
            Write("rideauth", "other", "TAG-1", {"info": {"status": "Invalid"}, "at": 3.0}),
        ]
    )
    assert await store.get_ride("CP/é 1") == {"csms|boot": {"interval": 300}, "csms|tx:-5": {"csms": 1001}}
    assert await store.get_ride_auth("csms") == {
        "TAG-1": {"info": {"status": "Accepted"}, "at": 1.5},
        "ISO14443:T2": {"info": {"status": "Blocked"}, "at": 2.0},
    }
    await store.apply([Write("ride", "CP/é 1", "csms|tx:-5", None), Write("rideauth", "csms", "TAG-1", None)])
    assert await store.get_ride("CP/é 1") == {"csms|boot": {"interval": 300}}
    assert list(await store.get_ride_auth("csms")) == ["ISO14443:T2"]
    assert await store.get_ride("nobody") == {} and await store.get_ride_auth("none") == {}


async def test_a_ride_through_journal_keeps_order_and_loses_nothing_until_acknowledged(store: Store) -> None:
    """The journal is an outbox stream of JSON entries, appended one CALL at a time and never trimmed."""
    outbox, stream = store.outbox(), "test:{CP/é 1}:journal:csms"
    for n in range(30):
        entry = {"u": f"u{n}", "a": "MeterValues", "p": {"connectorId": 1, "n": n}, "r": {}, "t": 1.0 + n}
        assert await outbox.append(stream, [entry], 10**9, 0) == 0
    got = await outbox.read(stream, 100)
    assert [e.data["u"] for e in got] == [f"u{n}" for n in range(30)]  # type: ignore[index]
    assert got[3].data == {"u": "u3", "a": "MeterValues", "p": {"connectorId": 1, "n": 3}, "r": {}, "t": 4.0}
    await outbox.ack(stream, [got[0].id])
    await outbox.ack(stream, [got[1].id])
    assert (await outbox.stats(stream))[0] == 28
    assert [e.data["u"] for e in await outbox.read(stream, 1)] == ["u2"]  # type: ignore[index]
    assert await outbox.streams("test:{CP/é 1}:journal:") == [stream]
    await outbox.ack(stream, [e.id for e in await outbox.read(stream, 100)])
    assert await outbox.stats(stream) == (0, None)
