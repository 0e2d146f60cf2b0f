"""Riding through an outage across crashes: the gateway (a ``python -m gateway run`` process) killed with SIGKILL
during the outage and again during the replay, Redis restarted during the replay, and the link dropped with a CALL
unanswered, for the four set-ups: 1.6 pass-through, 2.0.1 pass-through, a 1.6 charger behind a 2.0.1 CSMS and a
2.0.1 charger behind a 1.6 CSMS.

Both ends are independent, strict OCPP-J implementations (:mod:`tests.ride_peers`): the `ocpp` package and ocpp-rpc
(npm, strict mode), one on each side, swapping sides from one set-up to the next and from one case to the next, so
that in every case each plays the charger twice and the CSMS twice, and each set-up has both ways round. A frame
either refuses (schema, framing), a CALL either had no handler for, a CALLERROR, fails the test. The charger stays
connected when the gateway is killed: it opens a new connection with the same identity by itself, to the restarted
gateway, and goes on with its transaction.

The charger starts a transaction while the CSMS is down, then sends meter readings in it. The CSMS records every
CALL it accepts: it must get the transaction's start and each reading, in order, none lost, each reading in the
transaction the CSMS knows (its own id behind a 1.6 CSMS); the only repeat allowed is the one entry on the wire when
the gateway died, sent again under the same unique id (README: "the one-message window"), and with a CALL the
CSMS had on the wire unanswered when its link dropped; a Redis restart repeats nothing; in pass-through every
CALL reaches it under the unique id the charger sent it with."""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import signal
import subprocess
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import redis

from gateway.ops.lifecycle import running_gateway
from tests.conftest import RedisServer
from tests.e2e.test_scale import _write_config, eventually, gateway_process, wait_ready
from tests.helpers import make_config
from tests.ride_peers import OCPP, OCPP_RPC, Charger, Csms, Received, charger, csms

#: three gateway process starts in the SIGKILL test, each compiling every schema (~5 s on a busy 2-core machine)
TIMEOUT = 120
#: the transaction id the 1.6 CSMS assigns
CSMS_TX = 4242
Message = tuple[str, dict[str, Any]]


@dataclass(frozen=True)
class SetUp:
    charger: str  # the charger's OCPP version
    csms: str  # the CSMS's

    @property
    def id(self) -> str:
        return f"{self.charger}-to-{self.csms}".replace(".", "")

    # ---------------------------------------------------------------- what the charger sends

    def boot(self) -> Message:
        if self.charger == "1.6":
            return "BootNotification", {"chargePointVendor": "V", "chargePointModel": "M"}
        return "BootNotification", {"chargingStation": {"model": "M", "vendorName": "V"}, "reason": "PowerUp"}

    def authorize(self) -> Message:
        if self.charger == "1.6":
            return "Authorize", {"idTag": "TAG-K"}
        return "Authorize", {"idToken": {"idToken": "TAG-K", "type": "ISO14443"}}

    def start(self) -> Message:
        ts = "2027-01-01T00:00:00Z"
        if self.charger == "1.6":
            return "StartTransaction", {"connectorId": 1, "idTag": "TAG-K", "meterStart": 0, "timestamp": ts}
        return "TransactionEvent", {
            "eventType": "Started", "timestamp": ts, "triggerReason": "Authorized", "seqNo": 0,
            "transactionInfo": {"transactionId": "TX-K"}, "idToken": {"idToken": "TAG-K", "type": "ISO14443"},
            "evse": {"id": 1, "connectorId": 1},
        }  # fmt: skip

    def meter(self, n: int, tx: Any) -> Message:
        ts = f"2027-01-01T00:{(n + 1) // 60:02d}:{(n + 1) % 60:02d}Z"
        sampled = {"value": n, "measurand": "Energy.Active.Import.Register"}
        if self.charger == "1.6":
            mv = [{"timestamp": ts, "sampledValue": [{**sampled, "value": str(n), "unit": "Wh"}]}]
            return "MeterValues", {"connectorId": 1, "transactionId": tx, "meterValue": mv}
        return "TransactionEvent", {
            "eventType": "Updated", "timestamp": ts, "triggerReason": "MeterValuePeriodic", "seqNo": n + 1,
            "transactionInfo": {"transactionId": tx}, "meterValue": [{"timestamp": ts, "sampledValue": [sampled]}],
        }  # fmt: skip

    def charger_tx(self, start_answer: dict[str, Any]) -> Any:
        """The transaction id the charger uses in its readings."""
        return start_answer["transactionId"] if self.charger == "1.6" else "TX-K"

    # ---------------------------------------------------------------- the CSMS

    def answers(self) -> dict[str, dict[str, Any]]:
        """The CSMS's answers the test relies on (its built-in ones for the rest)."""
        boot = {"status": "Accepted", "currentTime": "2027-01-01T00:00:00Z", "interval": 60}
        if self.csms == "1.6":
            return {"BootNotification": boot,
                    "StartTransaction": {"transactionId": CSMS_TX, "idTagInfo": {"status": "Accepted"}}}  # fmt: skip
        return {"BootNotification": boot}

    def start_held(self) -> list[dict[str, Any]]:
        """The CSMS's CALL that starts the transaction (for ``Csms.up(hold=...)``)."""
        if self.csms == "1.6":
            return [{"action": "StartTransaction"}]
        return [{"action": "TransactionEvent", "eventType": "Started"}]


SETUPS = [SetUp("1.6", "1.6"), SetUp("2.0.1", "2.0.1"), SetUp("1.6", "2.0.1"), SetUp("2.0.1", "1.6")]
SHORT = {OCPP: "ocpp", OCPP_RPC: "rpc"}


@dataclass(frozen=True)
class Peers:
    charger: str  # the family playing the charger
    csms: str  # and the CSMS


def other(family: str) -> str:
    return OCPP_RPC if family == OCPP else OCPP


def cases(first_charger: str) -> list[Any]:
    """The four set-ups, the two families swapping sides from one to the next; ``first_charger`` plays the charger
    in the first."""
    out = []
    for i, s in enumerate(SETUPS):
        peers = Peers(first_charger, other(first_charger)) if i % 2 == 0 else Peers(other(first_charger), first_charger)
        out.append(pytest.param(s, peers, id=f"{s.id}-{SHORT[peers.charger]}-cp-{SHORT[peers.csms]}-csms"))
    return out


@dataclass(frozen=True)
class Got:
    """A transaction CALL as the CSMS received it: its unique id, "start" or "mv-<n>", and its transaction id."""

    uid: str
    key: str
    tx: Any


def transaction_calls(received: list[Received], setup: SetUp) -> list[Got]:
    out: list[Got] = []
    for r in received:
        p = r.payload
        if r.action == "StartTransaction":
            out.append(Got(r.uid, "start", None))
            continue
        tx = p.get("transactionId") if setup.csms == "1.6" else p.get("transactionInfo", {}).get("transactionId")
        if r.action == "TransactionEvent" and p.get("eventType") == "Started":
            out.append(Got(r.uid, "start", tx))
        elif r.action in ("MeterValues", "TransactionEvent") and p.get("meterValue"):
            out.append(Got(r.uid, f"mv-{int(float(p['meterValue'][0]['sampledValue'][0]['value']))}", tx))
    return out


def keys(server: Csms, cid: str, setup: SetUp) -> list[str]:
    return [g.key for g in transaction_calls(server.received(cid), setup)]


def assert_once_in_order(server: Csms, cid: str, setup: SetUp, n: int, kills: int) -> None:
    """The start, then every reading, in order, each under a unique id of its own; at most one repeat per kill, and
    only of the CALL just before it under the same unique id; each reading in the transaction the CSMS knows."""
    got = transaction_calls(server.received(cid), setup)
    distinct: list[Got] = []
    repeats = 0
    for g in got:
        if distinct and g.key == distinct[-1].key:
            assert g.uid == distinct[-1].uid, f"{g.key} sent again under another unique id: {got}"
            repeats += 1
            continue
        distinct.append(g)
    assert [g.key for g in distinct] == ["start"] + [f"mv-{i}" for i in range(n)], got
    assert len({g.uid for g in distinct}) == len(distinct), f"two CALLs under one unique id: {got}"
    assert repeats <= kills, got
    txs = {g.tx for g in got if g.key != "start"}
    if setup.csms == "1.6":
        assert txs == {CSMS_TX}, got  # the CSMS's own id, never the gateway's
    else:
        (tx,) = txs  # one transaction, the one the start named
        assert [g.tx for g in got if g.key == "start"] == [tx] * len([g for g in got if g.key == "start"])
        if setup.charger == "2.0.1":
            assert tx == "TX-K"


def refusals(cp: Charger, server: Csms) -> str:
    """What the strict peers refused ("" when nothing), with their transcripts."""
    problems = {f"{cp.family} charger": cp.problems(), f"{server.family} CSMS": server.problems()}
    if not any(problems.values()):
        return ""
    return f"a strict peer refused something: {problems}\n{cp.transcript()}\n{server.transcript()}"


def assert_accepted_as_sent(cp: Charger, server: Csms, cid: str, setup: SetUp) -> None:
    """Neither strict peer refused anything; in pass-through each CALL reached the CSMS under the charger's own
    unique id (translated: the gateway's, which :func:`assert_once_in_order` checks are one per CALL)."""
    assert not (refused := refusals(cp, server)), refused
    if setup.charger == setup.csms:
        sent = dict(cp.sent)
        assert all(sent.get(r.uid) == r.action for r in server.received(cid)), (cp.sent, server.received(cid))


async def until(check: Callable[[], Awaitable[bool]], cp: Charger, server: Csms, timeout: float = 5.0) -> None:
    """Poll ``check`` until true; fails at once when a strict peer refused something (what it refused, then)."""

    async def checked() -> bool:
        assert not (refused := refusals(cp, server)), refused
        return await check()

    try:
        await eventually(checked, timeout)
    except TimeoutError:
        raise AssertionError(
            f"not within {timeout} s: {check.__name__}\n{cp.transcript()}\n{server.transcript()}"
        ) from None


def ride_config(tmp: Path, csms_url: str, redis_url: str, rate: float, version: str) -> tuple[int, int]:
    backend = {"url": csms_url, "ocpp": version, "reconnect_grace_s": 0.2, "replay_per_s": rate}
    route = {"match": "*", "primary": "a", "offline": {"mode": "ride_through"}}
    return _write_config(tmp, csms_url, redis_url, backends={"a": backend}, routes=[route])


def sigkill(proc: subprocess.Popen[bytes]) -> None:
    proc.send_signal(signal.SIGKILL)
    proc.wait(10)


@pytest.mark.slow
@pytest.mark.parametrize(("setup", "peers"), cases(first_charger=OCPP))
async def test_sigkill_during_the_outage_and_during_the_replay_loses_nothing(
    redis_url: str, tmp_path: Path, setup: SetUp, peers: Peers
) -> None:
    cid = f"RIDE-KILL-{setup.id}"
    r = redis.Redis.from_url(redis_url)
    try:
        async with asyncio.timeout(TIMEOUT), csms(peers.csms, setup.csms, setup.answers()) as server:
            await server.up()
            cfg = tmp_path / "g.yaml"
            port, admin = ride_config(cfg, server.url, redis_url, rate=4, version=setup.csms)
            with contextlib.ExitStack() as processes:

                async def gateway() -> subprocess.Popen[bytes]:
                    proc = processes.enter_context(gateway_process(cfg))
                    await wait_ready(f"http://127.0.0.1:{admin}", proc)
                    return proc

                proc = await gateway()
                async with charger(peers.charger, f"ws://127.0.0.1:{port}/ocpp", cid, setup.charger) as cp:
                    assert (await cp.call(*setup.boot()))["interval"] == 60
                    await cp.call(*setup.authorize())

                    async def learned() -> bool:
                        return bool(r.hget(f"ocppgw:{{{cid}}}:ride", "a|boot"))

                    await until(learned, cp, server)
                    await server.down()
                    tx = setup.charger_tx(await cp.call(*setup.start()))  # answered by the gateway
                    for n in range(8):  # answered by the gateway, journalled in Redis
                        await cp.call(*setup.meter(n, tx))
                    sigkill(proc)  # during the outage, the charger connected

                    proc = await gateway()
                    await cp.connected(2)  # the CSMS is still down: admitted, riding at connect
                    assert (await cp.call(*setup.boot()))["interval"] == 60  # learned before the kill
                    for n in range(8, 12):
                        await cp.call(*setup.meter(n, tx))
                    await server.up()

                    async def some() -> bool:
                        return len(keys(server, cid, setup)) >= 3

                    await until(some, cp, server, timeout=20)
                    sigkill(proc)  # during the replay (4 per second)
                    assert "mv-11" not in keys(server, cid, setup), "the replay should still have been under way"

                    proc = await gateway()
                    await cp.connected(3)  # back: the rest of the journal first, then live
                    for n in range(12, 14):
                        await cp.call(*setup.meter(n, tx))

                    async def all_of_them() -> bool:
                        return "mv-13" in keys(server, cid, setup)

                    await until(all_of_them, cp, server, timeout=30)
                    assert_once_in_order(server, cid, setup, 14, kills=1)
                    boots = [g.uid for g in server.received(cid) if g.action == "BootNotification"]
                    assert len(set(boots)) == len(boots) == 2, server.transcript()  # once each
                    assert_accepted_as_sent(cp, server, cid, setup)
    finally:
        r.close()


class DurableRedis(RedisServer):
    """A redis-server that keeps its data across a restart (AOF, fsync at every write)."""

    def start(self) -> None:
        exe = self.exe
        self.proc = subprocess.Popen(
            [exe, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "yes",
             "--appendfsync", "always", "--dir", self.dir],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        client = redis.Redis(port=self.port, socket_connect_timeout=0.2)
        for _ in range(500):
            try:
                client.ping()
                break
            except redis.ConnectionError:
                time.sleep(0.02)
        client.close()


@pytest.fixture
def durable_redis() -> Iterator[DurableRedis]:
    if shutil.which("redis-server") is None:
        pytest.skip("redis-server not on PATH (the test command installs it)")
    server = DurableRedis()
    yield server
    server.stop()
    shutil.rmtree(server.dir, ignore_errors=True)


@pytest.mark.slow
@pytest.mark.parametrize(("setup", "peers"), cases(first_charger=OCPP_RPC))
async def test_redis_restarted_during_the_replay_loses_nothing(
    durable_redis: DurableRedis, setup: SetUp, peers: Peers
) -> None:
    cid = f"RIDE-REDIS-{setup.id}"
    async with asyncio.timeout(TIMEOUT), csms(peers.csms, setup.csms, setup.answers()) as server:
        await server.up()
        backend = {"url": server.url, "ocpp": setup.csms, "reconnect_grace_s": 0.2, "replay_per_s": 5}
        config = make_config({"a": backend}, store=durable_redis.url,
                             routes=[{"match": "*", "primary": "a", "offline": {"mode": "ride_through"}}])  # fmt: skip
        async with running_gateway(config) as running:
            async with charger(peers.charger, running.charger_url(), cid, setup.charger) as cp:
                await cp.call(*setup.boot())
                await cp.call(*setup.authorize())
                await server.down()
                tx = setup.charger_tx(await cp.call(*setup.start()))
                for n in range(10):
                    await cp.call(*setup.meter(n, tx))
                await server.up()

                async def some() -> bool:
                    return len(keys(server, cid, setup)) >= 3

                await until(some, cp, server, timeout=20)
                durable_redis.stop()  # mid-replay
                await asyncio.sleep(0.5)
                durable_redis.start()

                async def all_of_them() -> bool:
                    return "mv-9" in keys(server, cid, setup) and running.hub.conns[cid].ride.depth == 0  # type: ignore[union-attr]

                await until(all_of_them, cp, server, timeout=40)
                assert_once_in_order(server, cid, setup, 10, kills=0)
                await cp.call(*setup.meter(10, tx))  # live again: the CSMS answers

                async def live() -> bool:
                    return "mv-10" in keys(server, cid, setup)

                await until(live, cp, server)
                assert_once_in_order(server, cid, setup, 11, kills=0)
                assert_accepted_as_sent(cp, server, cid, setup)


@pytest.mark.slow
@pytest.mark.parametrize(("setup", "peers"), cases(first_charger=OCPP))
async def test_the_call_a_dropped_link_left_unanswered_is_replayed_under_its_unique_id(
    redis_url: str, setup: SetUp, peers: Peers
) -> None:
    """The CSMS goes away with the transaction's start on the wire, unanswered: the gateway answers it while riding
    and replays it first, under the unique id it went out with (translated too: the gateway's own)."""
    cid = f"RIDE-DROP-{setup.id}"
    async with asyncio.timeout(TIMEOUT), csms(peers.csms, setup.csms, setup.answers()) as server:
        await server.up(hold=setup.start_held())  # it never answers the start
        backend = {"url": server.url, "ocpp": setup.csms, "reconnect_grace_s": 0.2, "replay_per_s": 50}
        config = make_config({"a": backend}, store=redis_url,
                             routes=[{"match": "*", "primary": "a", "offline": {"mode": "ride_through"}}])  # fmt: skip
        async with running_gateway(config) as running:
            async with charger(peers.charger, running.charger_url(), cid, setup.charger) as cp:
                await cp.call(*setup.boot())
                await cp.call(*setup.authorize())
                starting = asyncio.create_task(cp.call(*setup.start()))

                async def on_the_wire() -> bool:
                    return keys(server, cid, setup) == ["start"]

                await until(on_the_wire, cp, server)
                await server.down()  # the link drops with the start unanswered
                tx = setup.charger_tx(await starting)  # answered by the gateway, riding
                for n in range(3):
                    await cp.call(*setup.meter(n, tx))
                await server.up()  # answering everything

                async def all_of_them() -> bool:
                    return "mv-2" in keys(server, cid, setup) and running.hub.conns[cid].ride.depth == 0  # type: ignore[union-attr]

                await until(all_of_them, cp, server, timeout=30)
                assert keys(server, cid, setup)[:2] == ["start", "start"]
                assert_once_in_order(server, cid, setup, 3, kills=1)
                assert_accepted_as_sent(cp, server, cid, setup)
