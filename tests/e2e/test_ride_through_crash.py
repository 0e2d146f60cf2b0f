"""Riding through an outage across crashes: the gateway (a ``python -m gateway run`` process) killed with SIGKILL
during the outage and again during the replay, and Redis restarted during the replay. The CSMS records every
CALL's unique id: it must get each charger CALL, in order, none lost; the only repeat allowed is the one entry on
the wire when the gateway died, sent again under the same unique id (README: "the one-message window")."""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import signal
import subprocess
import time
from collections.abc import AsyncIterator, Iterator
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


def csms_answer(cid: str, action: str, payload: dict[str, Any]) -> dict[str, Any]:
    if action == "BootNotification":
        return {"status": "Accepted", "currentTime": "2027-01-01T00:00:00Z", "interval": 60}
    return {}


def meter(n: int) -> str:
    mv = [{"timestamp": f"2027-01-01T00:{n // 60:02d}:{n % 60:02d}Z", "sampledValue": [{"value": str(n)}]}]
    return f'[2,"mv-{n}","MeterValues",{{"connectorId":1,"meterValue":{str(mv).replace(chr(39), chr(34))}}}]'


def delivered(csms: StubCsms, cid: str) -> list[str]:
    return [f[1] for c, f in csms.received if c == cid and f[0] == 2 and f[2] == "MeterValues"]


def assert_once_in_order(ids: list[str], n: int, kills: int) -> None:
    """Every id, in order; at most one repeat per kill, and only of the entry just before it (same unique id)."""
    distinct: list[str] = []
    repeats = 0
    for uid in ids:
        if distinct and uid == distinct[-1]:
            repeats += 1
            continue
        distinct.append(uid)
    assert distinct == [f"mv-{i}" for i in range(n)]
    assert repeats <= kills


@contextlib.asynccontextmanager
async def charger(port: int, cid: str) -> AsyncIterator[aiohttp.ClientWebSocketResponse]:
    async with aiohttp.ClientSession() as http:
        async with asyncio.timeout(20):
            while True:  # the gateway may still be starting
                try:
                    ws = await http.ws_connect(f"ws://127.0.0.1:{port}/ocpp/{cid}", protocols=("ocpp1.6",))
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


def ride_config(tmp: Path, csms_url: str, redis_url: str, rate: float) -> tuple[int, int]:
    backend = {"url": csms_url, "reconnect_grace_s": 0.2, "replay_per_s": rate}
    route = {"match": "*", "primary": "a", "offline": {"mode": "ride_through"}}
    return _write_config(tmp, csms_url, redis_url, backends={"a": backend}, routes=[route])


@pytest.mark.slow
async def test_sigkill_during_the_outage_and_during_the_replay_loses_nothing(redis_url: str, tmp_path: Path) -> None:
    cid = "RIDE-KILL"
    csms = StubCsms(answer=csms_answer, subprotocols=("ocpp1.6",))
    await csms.start()
    cfg = tmp_path / "g.yaml"
    port, admin = ride_config(cfg, csms.url, redis_url, rate=4)
    r = redis.Redis.from_url(redis_url)
    try:
        async with asyncio.timeout(TIMEOUT):
            with gateway_process(cfg) as proc:
                await wait_ready(f"http://127.0.0.1:{admin}", proc)
                async with charger(port, cid) as ws:
                    boot = '[2,"b1","BootNotification",{"chargePointVendor":"V","chargePointModel":"M"}]'
                    assert (await call(ws, boot))[2]["interval"] == 60

                    async def learned() -> bool:
                        return bool(r.hget(f"ocppgw:{{{cid}}}:ride", "a|boot"))

                    await eventually(learned)
                    await csms.stop()
                    for n in range(8):  # answered by the gateway, journalled in Redis
                        assert (await call(ws, meter(n)))[:2] == [3, f"mv-{n}"]
                proc.send_signal(signal.SIGKILL)  # during the outage
                proc.wait(10)
            with gateway_process(cfg) as proc:
                await wait_ready(f"http://127.0.0.1:{admin}", proc)
                async with charger(port, cid) as ws:  # the CSMS is still down: admitted, riding at connect
                    boot2 = '[2,"b2","BootNotification",{"chargePointVendor":"V","chargePointModel":"M"}]'
                    assert (await call(ws, boot2))[2]["interval"] == 60  # learned before the kill, from the store
                    for n in range(8, 12):
                        assert (await call(ws, meter(n)))[:2] == [3, f"mv-{n}"]
                    await csms.start(csms.port)

                    async def some() -> bool:
                        return len(delivered(csms, cid)) >= 3

                    await eventually(some, timeout=20)
                proc.send_signal(signal.SIGKILL)  # during the replay (4 per second)
                proc.wait(10)
            assert len(set(delivered(csms, cid))) < 12, "the replay should still have been under way"
            with gateway_process(cfg) as proc:
                await wait_ready(f"http://127.0.0.1:{admin}", proc)
                async with charger(port, cid) as ws:  # back: the rest of the journal first, then live
                    for n in range(12, 14):
                        assert (await call(ws, meter(n)))[:2] == [3, f"mv-{n}"]

                    async def all_of_them() -> bool:
                        return "mv-13" in delivered(csms, cid)

                    await eventually(all_of_them, timeout=30)
            assert_once_in_order(delivered(csms, cid), 14, kills=1)
            assert [f[1] for c, f in csms.received if c == cid and f[2] == "BootNotification"] == ["b1", "b2"]
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
async def test_redis_restarted_during_the_replay_loses_nothing(durable_redis: DurableRedis) -> None:
    cid = "RIDE-REDIS"
    csms = StubCsms(answer=csms_answer, subprotocols=("ocpp1.6",))
    await csms.start()
    backend = {"url": csms.url, "reconnect_grace_s": 0.2, "replay_per_s": 5}
    config = make_config({"a": backend}, store=durable_redis.url,
                         routes=[{"match": "*", "primary": "a", "offline": {"mode": "ride_through"}}])  # fmt: skip
    try:
        async with asyncio.timeout(TIMEOUT), running_gateway(config) as running:
            async with charger(running.port, cid) as ws:
                await call(ws, '[2,"b1","BootNotification",{"chargePointVendor":"V","chargePointModel":"M"}]')
                await csms.stop()
                for n in range(10):
                    assert (await call(ws, meter(n)))[:2] == [3, f"mv-{n}"]
                await csms.start(csms.port)

                async def some() -> bool:
                    return len(delivered(csms, cid)) >= 3

                await eventually(some, timeout=20)
                durable_redis.stop()  # mid-replay
                await asyncio.sleep(0.5)
                durable_redis.start()

                async def all_of_them() -> bool:
                    return "mv-9" in delivered(csms, cid) and running.hub.conns[cid].ride.depth == 0  # type: ignore[union-attr]

                await eventually(all_of_them, timeout=40)
                assert_once_in_order(delivered(csms, cid), 10, kills=1)
                assert (await call(ws, meter(10)))[:2] == [3, "mv-10"]  # live again: the CSMS answers
                await eventually(lambda: _has(csms, cid, "mv-10"))
    finally:
        await csms.stop()


async def _has(csms: StubCsms, cid: str, uid: str) -> bool:
    return uid in delivered(csms, cid)
