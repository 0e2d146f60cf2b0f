"""The password verifier's caches without sockets: the per-process one and the one kept in the store (shared by every
process and replica), over the memory store. scrypt is counted by wrapping ``verify_password``; hashes use a small N
so that each test stays fast (the cost does not change what is counted)."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Iterator

import pytest

import gateway.security as security
from gateway.config import ConfigError, parse_config
from gateway.security import PasswordVerifier, hash_password, password_proof
from gateway.store import MemoryStore, StoreUnavailable, Write

PW = "correct-horse-battery-1"
OTHER = "wrong-password-xxxxxxx"
SECRET = "s" * 40


@pytest.fixture
def scrypts(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """The stored hash of every scrypt the verifier ran (the dummy hash included)."""
    ran: list[str] = []
    real = security.verify_password

    def counted(password: str, encoded: str) -> bool:
        ran.append(encoded)
        return real(password, encoded)

    monkeypatch.setattr(security, "verify_password", counted)
    yield ran


async def store_with(cid: str, password: str) -> tuple[MemoryStore, str]:
    store = MemoryStore()
    h = hash_password(password, n=2**10)
    await store.apply([Write("cred", cid, "", {"hash": h})])
    return store, h


def verifier(store: MemoryStore, results: Counter[str], secret: str | None = SECRET) -> PasswordVerifier:
    return PasswordVerifier(
        store, secret=secret, ttl_s=60, on_cache=lambda r: results.update([r]), store_errors=(StoreUnavailable,)
    )


@pytest.mark.parametrize("secret", [SECRET, None], ids=["shared", "per-process"])
async def test_second_check_of_the_right_password_runs_no_scrypt(scrypts: list[str], secret: str | None) -> None:
    store, _ = await store_with("CP-1", PW)
    results: Counter[str] = Counter()
    v = verifier(store, results, secret)
    assert await v.verify("CP-1", PW)
    assert await v.verify("CP-1", PW)
    assert len(scrypts) == 1
    assert results == {"miss": 1, "hit": 1}


async def test_a_restarted_process_with_the_same_secret_hits_the_shared_cache(scrypts: list[str]) -> None:
    store, _ = await store_with("CP-1", PW)
    results: Counter[str] = Counter()
    assert await verifier(store, results).verify("CP-1", PW)
    assert await verifier(store, results).verify("CP-1", PW)  # a new verifier: a new process on the same store
    assert len(scrypts) == 1
    assert results == {"miss": 1, "hit": 1}
    # without the shared cache, a new process starts empty
    assert await verifier(store, results, None).verify("CP-1", PW)
    assert len(scrypts) == 2


async def test_another_secret_does_not_read_the_proofs(scrypts: list[str]) -> None:
    store, _ = await store_with("CP-1", PW)
    results: Counter[str] = Counter()
    assert await verifier(store, results).verify("CP-1", PW)
    assert await verifier(store, results, "t" * 40).verify("CP-1", PW)
    assert len(scrypts) == 2 and results == {"miss": 2}


@pytest.mark.parametrize("secret", [SECRET, None], ids=["shared", "per-process"])
async def test_a_wrong_password_after_a_cached_success_is_refused_with_a_real_scrypt(
    scrypts: list[str], secret: str | None
) -> None:
    store, h = await store_with("CP-1", PW)
    results: Counter[str] = Counter()
    v = verifier(store, results, secret)
    assert await v.verify("CP-1", PW)
    assert not await v.verify("CP-1", OTHER)
    assert scrypts == [h, h]  # the charger's own hash, not a shortcut
    assert await v.verify("CP-1", PW)  # the wrong guess did not forget the right password
    assert results == {"miss": 2, "hit": 1}


@pytest.mark.parametrize("secret", [SECRET, None], ids=["shared", "per-process"])
async def test_rotation_invalidates_the_cache(scrypts: list[str], secret: str | None) -> None:
    store, _ = await store_with("CP-1", PW)
    results: Counter[str] = Counter()
    v = verifier(store, results, secret)
    assert await v.verify("CP-1", PW)
    new = "rotated-password-0123456789"
    await store.apply([Write("cred", "CP-1", "", {"hash": hash_password(new, n=2**10)})])
    assert not await v.verify("CP-1", PW)  # the old password, proven before, no longer passes
    assert await v.verify("CP-1", new)
    assert await v.verify("CP-1", new)
    assert len(scrypts) == 3
    assert results == {"miss": 3, "hit": 1}


async def test_deleted_credentials_take_the_proof_with_them(scrypts: list[str]) -> None:
    store, _ = await store_with("CP-1", PW)
    results: Counter[str] = Counter()
    v = verifier(store, results)
    assert await v.verify("CP-1", PW)
    await store.apply([Write("cred", "CP-1", "", None)])
    assert await store.get_password_hash_and_proof("CP-1", 60) == (None, None)
    assert not await v.verify("CP-1", PW)
    assert len(scrypts) == 2  # the unknown id paid the dummy hash
    assert scrypts[1].startswith("scrypt$16384$")


async def test_an_unknown_id_costs_the_dummy_hash_every_time(scrypts: list[str]) -> None:
    store = MemoryStore()
    results: Counter[str] = Counter()
    v = verifier(store, results)
    assert not await v.verify("CP-X", PW)
    assert not await v.verify("CP-X", PW)
    assert len(scrypts) == 2 and scrypts[0] == scrypts[1]
    assert results == {"miss": 2}
    assert await store.get_password_hash_and_proof("CP-X", 60) == (None, None)


async def test_the_proof_holds_neither_the_password_nor_the_hash() -> None:
    store, h = await store_with("CP-1", PW)
    assert await verifier(store, Counter()).verify("CP-1", PW)
    _, proof = await store.get_password_hash_and_proof("CP-1", 60)
    assert proof == password_proof(SECRET.encode(), "CP-1", h, PW) and len(proof) == 32
    salt_b64, dk_b64 = h.split("$")[4:]
    for part in (PW.encode(), h.encode(), salt_b64.encode(), dk_b64.encode()):
        assert part not in proof
    # bound to every part: another charger, hash or password gives another proof
    assert proof != password_proof(SECRET.encode(), "CP-2", h, PW)
    assert proof != password_proof(SECRET.encode(), "CP-1", h + "x", PW)
    assert proof != password_proof(SECRET.encode(), "CP-1", h, PW + "x")
    # length-prefixed: moving a character from one part to the next changes the input
    assert password_proof(b"k", "ab", "c", "d") != password_proof(b"k", "a", "bc", "d")


async def test_a_proof_the_store_cannot_keep_does_not_refuse_the_charger(scrypts: list[str]) -> None:
    store, _ = await store_with("CP-1", PW)

    async def down(cid: str, proof: bytes, ttl_s: float) -> None:
        raise StoreUnavailable("connection refused")

    store.put_password_proof = down  # type: ignore[method-assign]
    results: Counter[str] = Counter()
    v = verifier(store, results)
    assert await v.verify("CP-1", PW)
    assert await v.verify("CP-1", PW)
    assert len(scrypts) == 2 and results == {"miss": 2}


def test_verification_cache_config_needs_a_long_secret_and_names_its_paths() -> None:
    base = {"backends": {"a": {"url": "ws://127.0.0.1:9100/ocpp"}}, "routes": [{"match": "*", "primary": "a"}]}
    assert parse_config(base).security.verification_cache is None
    c = parse_config({**base, "security": {"verification_cache": {"secret": "${S}"}}}, env={"S": SECRET})
    assert c.security.verification_cache is not None
    assert c.security.verification_cache.secret == SECRET and c.security.verification_cache.ttl_s == 30 * 86400
    assert SECRET not in repr(c)
    with pytest.raises(ConfigError) as e:
        parse_config({**base, "security": {"verification_cache": {"secret": "short", "ttl_s": 0, "x": 1}}})
    assert {p for p, _ in e.value.problems} == {
        "security.verification_cache.secret",
        "security.verification_cache.ttl_s",
        "security.verification_cache.x",
    }
    with pytest.raises(ConfigError) as e:
        parse_config({**base, "security": {"verification_cache": {"ttl_s": 60}}})
    assert [p for p, _ in e.value.problems] == ["security.verification_cache.secret"]


async def test_a_retry_while_the_first_check_still_runs_waits_for_it_instead_of_hashing_again(
    scrypts: list[str],
) -> None:
    store, _ = await store_with("CP-1", PW)
    results: Counter[str] = Counter()
    v = verifier(store, results)
    first = asyncio.ensure_future(v.verify("CP-1", PW))
    await asyncio.sleep(0)  # the first check is running (its scrypt queued in the executor)
    second = asyncio.ensure_future(v.verify("CP-1", PW))
    other = asyncio.ensure_future(v.verify("CP-1", OTHER))  # another password never shares a result
    assert await asyncio.gather(first, second, other) == [True, True, False]
    assert len(scrypts) == 2
    assert results == {"miss": 2, "joined": 1}
    assert await v.verify("CP-1", PW) and len(scrypts) == 2  # then from the cache


async def test_a_charger_that_gives_up_does_not_cancel_the_check_its_retry_waits_for(scrypts: list[str]) -> None:
    store, _ = await store_with("CP-1", PW)
    results: Counter[str] = Counter()
    v = verifier(store, results)
    first = asyncio.ensure_future(v.verify("CP-1", PW))
    await asyncio.sleep(0)
    retry = asyncio.ensure_future(v.verify("CP-1", PW))
    await asyncio.sleep(0)
    first.cancel()  # its handshake deadline passed
    assert await retry
    assert len(scrypts) == 1 and results == {"miss": 1, "joined": 1}
    _, proof = await store.get_password_hash_and_proof("CP-1", 60)
    assert proof is not None  # the work was not wasted
