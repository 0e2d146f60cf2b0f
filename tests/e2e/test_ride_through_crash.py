"""Riding through an outage across crashes: the gateway (a ``python -m gateway run`` process) killed with SIGKILL
during the outage and again during the replay, and Redis restarted during the replay, for the four set-ups: 1.6
pass-through, 2.0.1 pass-through, a 1.6 charger behind a 2.0.1 CSMS and a 2.0.1 charger behind a 1.6 CSMS.

The charger starts a transaction while the CSMS is down, then sends meter readings in it. The CSMS records every
CALL: it must get the transaction's start and each reading, in order, none lost, each reading in the transaction
the CSMS knows (its own id behind a 1.6 CSMS); the only repeat allowed is the one entry on the wire when the
gateway died, sent again under the same unique id (README: "the one-message window")."""

from __future__ import annotations

import asyncio
import contextlib
import json
import shutil
import signal
import subprocess
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import redis

from gateway.ops.lifecycle import running_gateway
from tests.conftest import RedisServer
from tests.e2e.test_scale import _write_config, eventually, gateway_process, wait_ready
from tests.helpers import StubCsms, make_config, recv_json

TIMEOUT = 90
#: the transaction id a 1.6 CSMS assigns
CSMS_TX = 4242
SUBPROTOCOL = {"1.6": "ocpp1.6", "2.0.1": "ocpp2.0.1"}


@dataclass(frozen=True)
class SetUp:
    charger: str  # the charger's OCPP version
    csms: str  # the CSMS's

    @property
    def id(self) -> str:
        return f"{self.charger}-to-{self.csms}".replace(".", "")

    # ---------------------------------------------------------------- what the charger sends

    def boot(self, uid: str) -> str:
        if self.charger == "1.6":
            return f'[2,"{uid}","BootNotification",{{"chargePointVendor":"V","chargePointModel":"M"}}]'
        station = {"chargingStation": {"model": "M", "vendorName": "V"}, "reason": "PowerUp"}
        return json.dumps([2, uid, "BootNotification", station])

    def authorize(self) -> str:
        if self.charger == "1.6":
            return '[2,"a1","Authorize",{"idTag":"TAG-K"}]'
        return '[2,"a1","Authorize",{"idToken":{"idToken":"TAG-K","type":"ISO14443"}}]'

    def start(self) -> str:
        ts = "2027-01-01T00:00:00Z"
        if self.charger == "1.6":
            p: dict[str, Any] = {"connectorId": 1, "idTag": "TAG-K", "meterStart": 0, "timestamp": ts}
            return json.dumps([2, "start", "StartTransaction", p])
        p = {"eventType": "Started", "timestamp": ts, "triggerReason": "Authorized", "seqNo": 0,
             "transactionInfo": {"transactionId": "TX-K"}, "idToken": {"idToken": "TAG-K", "type": "ISO14443"},
             "evse": {"id": 1, "connectorId": 1}}  # fmt: skip
        return json.dumps([2, "start", "TransactionEvent", p])

    def meter(self, n: int, tx: Any) -> str:
        ts = f"2027-01-01T00:{(n + 1) // 60:02d}:{(n + 1) % 60:02d}Z"
        sampled = {"value": n, "measurand": "Energy.Active.Import.Register"}
        if self.charger == "1.6":
            mv = [{"timestamp": ts, "sampledValue": [{**sampled, "value": str(n), "unit": "Wh"}]}]
            return json.dumps([2, f"mv-{n}", "MeterValues", {"connectorId": 1, "transactionId": tx, "meterValue": mv}])
        p = {"eventType": "Updated", "timestamp": ts, "triggerReason": "MeterValuePeriodic", "seqNo": n + 1,
             "transactionInfo": {"transactionId": tx},
             "meterValue": [{"timestamp": ts, "sampledValue": [sampled]}]}  # fmt: skip
        return json.dumps([2, f"mv-{n}", "TransactionEvent", p])

    def charger_tx(self, start_answer: dict[str, Any]) -> Any:
        """The transaction id the charger uses in its readings."""
        return start_answer["transactionId"] if self.charger == "1.6" else "TX-K"

    # ---------------------------------------------------------------- the CSMS

    def answer(self, cid: str, action: str, payload: dict[str, Any]) -> dict[str, Any]:
        if action == "BootNotification":
            return {"status": "Accepted", "currentTime": "2027-01-01T00:00:00Z", "interval": 60}
        if action == "Authorize":
            return (
                {"idTagInfo": {"status": "Accepted"}} if self.csms == "1.6" else {"idTokenInfo": {"status": "Accepted"}}
            )
        if action == "StartTransaction":
            return {"idTagInfo": {"status": "Accepted"}, "transactionId": CSMS_TX}
        if action == "TransactionEvent" and "idToken" in payload:
            return {"idTokenInfo": {"status": "Accepted"}}
        return {}

    def csms_stub(self) -> StubCsms:
        return StubCsms(answer=self.answer, subprotocols=(SUBPROTOCOL[self.csms],))


SETUPS = [SetUp("1.6", "1.6"), SetUp("2.0.1", "2.0.1"), SetUp("1.6", "2.0.1"), SetUp("2.0.1", "1.6")]
PARAMS = [pytest.param(s, id=s.id) for s in SETUPS]


@dataclass(frozen=True)
class Got:
    """A transaction CALL as the CSMS received it: its unique id, "start" or "mv-<n>", and its transaction id."""

    uid: str
    key: str
    tx: Any


def transaction_calls(csms: StubCsms, cid: str, setup: SetUp) -> list[Got]:
    out: list[Got] = []
    for c, f in csms.received:
        if c != cid or f[0] != 2:
            continue
        uid, action, p = f[1], f[2], f[3]
        if action == "StartTransaction":
            out.append(Got(uid, "start", None))
            continue
        tx = p.get("transactionId") if setup.csms == "1.6" else p.get("transactionInfo", {}).get("transactionId")
        if action == "TransactionEvent" and p.get("eventType") == "Started":
            out.append(Got(uid, "start", tx))
        elif action in ("MeterValues", "TransactionEvent") and p.get("meterValue"):
            out.append(Got(uid, f"mv-{int(float(p['meterValue'][0]['sampledValue'][0]['value']))}", tx))
    return out


def keys(csms: StubCsms, cid: str, setup: SetUp) -> list[str]:
    return [g.key for g in transaction_calls(csms, cid, setup)]


def assert_once_in_order(csms: StubCsms, cid: str, setup: SetUp, n: int, kills: int) -> None:
    """The start, then every reading, in order; at most one repeat per kill, and only of the CALL just before it under
    the same unique id; each reading in the transaction the CSMS knows."""
    got = transaction_calls(csms, cid, setup)
    distinct: list[Got] = []
    repeats = 0
    for g in got:
        if distinct and g.key == distinct[-1].key:
            assert g.uid == distinct[-1].uid, f"{g.key} sent again under another unique id: {got}"
            repeats += 1
            continue
        distinct.append(g)
    assert [g.key for g in distinct] == ["start"] + [f"mv-{i}" for i in range(n)], got
    assert repeats <= kills, got
    txs = {g.tx for g in got if g.key != "start"}
    if setup.csms == "1.6":
        assert txs == {CSMS_TX}, got  # the CSMS's own id, never the gateway's
    else:
        (tx,) = txs  # one transaction, the one the start named
        assert [g.tx for g in got if g.key == "start"] == [tx] * len([g for g in got if g.key == "start"])
        if setup.charger == "2.0.1":
            assert tx == "TX-K"


@contextlib.asynccontextmanager
async def charger(port: int, cid: str, setup: SetUp) -> AsyncIterator[aiohttp.ClientWebSocketResponse]:
    async with aiohttp.ClientSession() as http:
        async with asyncio.timeout(20):
            while True:  # the gateway may still be starting
                try:
                    ws = await http.ws_connect(
                        f"ws://127.0.0.1:{port}/ocpp/{cid}", protocols=(SUBPROTOCOL[setup.charger],)
                    )
                    break
                except aiohttp.ClientError:
                    await asyncio.sleep(0.1)
        try:
            yield ws
        finally:
            await ws.close()


async def call(ws: aiohttp.ClientWebSocketResponse, text: str) -> list[Any]:
    await ws.send_str(text)
    return await recv_json(ws, timeout=15)


async def answered(ws: aiohttp.ClientWebSocketResponse, text: str) -> dict[str, Any]:
    got = await call(ws, text)
    assert got[:2] == [3, json.loads(text)[1]], got
    return dict(got[2])


def ride_config(tmp: Path, csms_url: str, redis_url: str, rate: float, version: str) -> tuple[int, int]:
    backend = {"url": csms_url, "ocpp": version, "reconnect_grace_s": 0.2, "replay_per_s": rate}
    route = {"match": "*", "primary": "a", "offline": {"mode": "ride_through"}}
    return _write_config(tmp, csms_url, redis_url, backends={"a": backend}, routes=[route])


@pytest.mark.slow
@pytest.mark.parametrize("setup", PARAMS)
async def test_sigkill_during_the_outage_and_during_the_replay_loses_nothing(
    redis_url: str, tmp_path: Path, setup: SetUp
) -> None:
    cid = f"RIDE-KILL-{setup.id}"
    csms = setup.csms_stub()
    await csms.start()
    cfg = tmp_path / "g.yaml"
    port, admin = ride_config(cfg, csms.url, redis_url, rate=4, version=setup.csms)
    r = redis.Redis.from_url(redis_url)
    try:
        async with asyncio.timeout(TIMEOUT):
            with gateway_process(cfg) as proc:
                await wait_ready(f"http://127.0.0.1:{admin}", proc)
                async with charger(port, cid, setup) as ws:
                    assert (await answered(ws, setup.boot("b1")))["interval"] == 60
                    await answered(ws, setup.authorize())

                    async def learned() -> bool:
                        return bool(r.hget(f"ocppgw:{{{cid}}}:ride", "a|boot"))

                    await eventually(learned)
                    await csms.stop()
                    tx = setup.charger_tx(await answered(ws, setup.start()))  # answered by the gateway
                    for n in range(8):  # answered by the gateway, journalled in Redis
                        await answered(ws, setup.meter(n, tx))
                proc.send_signal(signal.SIGKILL)  # during the outage
                proc.wait(10)
            with gateway_process(cfg) as proc:
                await wait_ready(f"http://127.0.0.1:{admin}", proc)
                async with charger(port, cid, setup) as ws:  # the CSMS is still down: admitted, riding at connect
                    assert (await answered(ws, setup.boot("b2")))["interval"] == 60  # learned before the kill
                    for n in range(8, 12):
                        await answered(ws, setup.meter(n, tx))
                    await csms.start(csms.port)

                    async def some() -> bool:
                        return len(keys(csms, cid, setup)) >= 3

                    await eventually(some, timeout=20)
                proc.send_signal(signal.SIGKILL)  # during the replay (4 per second)
                proc.wait(10)
            assert "mv-11" not in keys(csms, cid, setup), "the replay should still have been under way"
            with gateway_process(cfg) as proc:
                await wait_ready(f"http://127.0.0.1:{admin}", proc)
                async with charger(port, cid, setup) as ws:  # back: the rest of the journal first, then live
                    for n in range(12, 14):
                        await answered(ws, setup.meter(n, tx))

                    async def all_of_them() -> bool:
                        return "mv-13" in keys(csms, cid, setup)

                    await eventually(all_of_them, timeout=30)
            assert_once_in_order(csms, cid, setup, 14, kills=1)
            boots = [f[1] for c, f in csms.received if c == cid and f[0] == 2 and f[2] == "BootNotification"]
            # once each; a translating gateway sends its own unique ids
            assert boots == ["b1", "b2"] if setup.charger == setup.csms else len(set(boots)) == len(boots) == 2
    finally:
        r.close()
        await csms.stop()


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
@pytest.mark.parametrize("setup", PARAMS)
async def test_redis_restarted_during_the_replay_loses_nothing(durable_redis: DurableRedis, setup: SetUp) -> None:
    cid = f"RIDE-REDIS-{setup.id}"
    csms = setup.csms_stub()
    await csms.start()
    backend = {"url": csms.url, "ocpp": setup.csms, "reconnect_grace_s": 0.2, "replay_per_s": 5}
    config = make_config({"a": backend}, store=durable_redis.url,
                         routes=[{"match": "*", "primary": "a", "offline": {"mode": "ride_through"}}])  # fmt: skip
    try:
        async with asyncio.timeout(TIMEOUT), running_gateway(config) as running:
            async with charger(running.port, cid, setup) as ws:
                await answered(ws, setup.boot("b1"))
                await answered(ws, setup.authorize())
                await csms.stop()
                tx = setup.charger_tx(await answered(ws, setup.start()))
                for n in range(10):
                    await answered(ws, setup.meter(n, tx))
                await csms.start(csms.port)

                async def some() -> bool:
                    return len(keys(csms, cid, setup)) >= 3

                await eventually(some, timeout=20)
                durable_redis.stop()  # mid-replay
                await asyncio.sleep(0.5)
                durable_redis.start()

                async def all_of_them() -> bool:
                    return "mv-9" in keys(csms, cid, setup) and running.hub.conns[cid].ride.depth == 0  # type: ignore[union-attr]

                await eventually(all_of_them, timeout=40)
                assert_once_in_order(csms, cid, setup, 10, kills=0)
                await answered(ws, setup.meter(10, tx))  # live again: the CSMS answers

                async def live() -> bool:
                    return "mv-10" in keys(csms, cid, setup)

                await eventually(live)
                assert_once_in_order(csms, cid, setup, 11, kills=0)
    finally:
        await csms.stop()


@pytest.mark.slow
@pytest.mark.parametrize("setup", PARAMS)
async def test_the_call_a_dropped_link_left_unanswered_is_replayed_under_its_unique_id(
    redis_url: str, setup: SetUp
) -> None:
    """The CSMS goes away with the transaction's start on the wire, unanswered: the gateway answers it while riding
    and replays it first, under the unique id it went out with (translated too: the gateway's own)."""
    cid = f"RIDE-DROP-{setup.id}"
    silent = True

    def answer(c: str, action: str, payload: dict[str, Any]) -> dict[str, Any] | None:
        starting = action == "StartTransaction" or payload.get("eventType") == "Started"
        return None if silent and starting else setup.answer(c, action, payload)

    csms = StubCsms(answer=answer, subprotocols=(SUBPROTOCOL[setup.csms],))
    await csms.start()
    backend = {"url": csms.url, "ocpp": setup.csms, "reconnect_grace_s": 0.2, "replay_per_s": 50}
    config = make_config({"a": backend}, store=redis_url,
                         routes=[{"match": "*", "primary": "a", "offline": {"mode": "ride_through"}}])  # fmt: skip
    try:
        async with asyncio.timeout(TIMEOUT), running_gateway(config) as running:
            async with charger(running.port, cid, setup) as ws:
                await answered(ws, setup.boot("b1"))
                await answered(ws, setup.authorize())
                await ws.send_str(setup.start())

                async def on_the_wire() -> bool:
                    return keys(csms, cid, setup) == ["start"]

                await eventually(on_the_wire)
                await csms.stop()  # the link drops with the start unanswered
                got = await recv_json(ws, timeout=15)
                assert got[:2] == [3, "start"], got  # answered by the gateway, riding
                tx = setup.charger_tx(got[2])
                for n in range(3):
                    await answered(ws, setup.meter(n, tx))
                silent = False
                await csms.start(csms.port)

                async def all_of_them() -> bool:
                    return "mv-2" in keys(csms, cid, setup) and running.hub.conns[cid].ride.depth == 0  # type: ignore[union-attr]

                await eventually(all_of_them, timeout=30)
                assert [g.key for g in transaction_calls(csms, cid, setup)][:2] == ["start", "start"]
                assert_once_in_order(csms, cid, setup, 3, kills=1)
    finally:
        await csms.stop()
