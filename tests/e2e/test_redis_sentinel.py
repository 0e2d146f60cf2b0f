"""The Redis store behind Sentinel (``redis+sentinel://``): a real master, a replica and a Sentinel on free ports.

What an operator who runs Redis with Sentinel checks: the gateway finds the master through Sentinel, its state lands
there, and when Sentinel fails the master over to the replica the chargers' sessions live on and the state that
follows lands on the new master.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import pytest
import redis

from tests.conftest import _free_port
from tests.e2e.test_gateway import get_metrics, metric
from tests.e2e.test_scale import admin_call, answer_reset
from tests.helpers import gateway, make_config, raw_charger, recv_json, stub_csms

SERVICE = "gw"


@dataclass
class Sentinelled:
    master: int
    replica: int
    sentinel: int

    @property
    def url(self) -> str:
        return f"redis+sentinel://127.0.0.1:{self.sentinel}/{SERVICE}/0"

    def client(self, port: int) -> redis.Redis:
        return redis.Redis(port=port, socket_timeout=2)

    def master_port(self) -> int:
        c = self.client(self.sentinel)
        try:
            addr = c.sentinel_get_master_addr_by_name(SERVICE)
            assert isinstance(addr, tuple | list), addr
            return int(addr[1])
        finally:
            c.close()


def _wait(predicate: object, what: str, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            if callable(predicate) and predicate():
                return
        except redis.RedisError:
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what} within {timeout} s")
        time.sleep(0.05)


def _replication(port: int) -> dict[str, object]:
    c = redis.Redis(port=port, socket_timeout=1)
    try:
        return dict(c.info("replication"))
    finally:
        c.close()


@pytest.fixture
def sentinelled() -> Iterator[Sentinelled]:
    exe = shutil.which("redis-server")
    if exe is None:
        pytest.skip("redis-server not on PATH (the test command installs it)")
    work = Path(tempfile.mkdtemp(prefix="ocppgw-sentinel-"))
    s = Sentinelled(_free_port(), _free_port(), _free_port())
    common = ["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
    procs: list[subprocess.Popen[bytes]] = []

    def start(argv: list[str]) -> None:
        procs.append(subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=work))

    try:
        (work / "m").mkdir()
        (work / "r").mkdir()
        start([exe, "--port", str(s.master), "--dir", str(work / "m"), *common])
        start([exe, "--port", str(s.replica), "--dir", str(work / "r"), "--replicaof", "127.0.0.1", str(s.master),
               *common])  # fmt: skip
        _wait(lambda: _replication(s.replica).get("master_link_status") == "up", "the replica did not sync")
        conf = work / "sentinel.conf"  # Sentinel rewrites its config: a file of its own
        conf.write_text(
            f"port {s.sentinel}\nbind 127.0.0.1\ndir {work}\n"
            f"sentinel monitor {SERVICE} 127.0.0.1 {s.master} 1\n"
            f"sentinel down-after-milliseconds {SERVICE} 1000\n"
            f"sentinel failover-timeout {SERVICE} 10000\n"
        )
        start([exe, str(conf), "--sentinel"])

        def replica_promotable() -> bool:
            """Sentinel has the replica's own INFO and a link to it: before that it refuses to fail over to it
            (NOGOODSLAVE), which it does until its first INFO round with the replica is done."""
            c = s.client(s.sentinel)
            try:
                replicas = c.sentinel_slaves(SERVICE)
            finally:
                c.close()
            if len(replicas) != 1:
                return False
            r = replicas[0]
            return bool(
                r.get("master-link-status") == "ok" and r.get("role-reported") == "slave"
                and not r.get("is_disconnected") and not r.get("is_sdown")
                and 0 < int(r.get("info-refresh", 0)) < 5000
            )  # fmt: skip

        _wait(replica_promotable, "Sentinel did not find the replica ready to promote")
        yield s
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            p.wait(10)
        shutil.rmtree(work, ignore_errors=True)


def _fail_over(s: Sentinelled, timeout: float = 20.0) -> None:
    """SENTINEL FAILOVER, asked again while Sentinel answers that no replica is good yet (its view of the replica
    lags its INFO rounds)."""
    deadline = time.monotonic() + timeout
    c = s.client(s.sentinel)
    try:
        while True:
            try:
                assert c.sentinel_failover(SERVICE)
                return
            except redis.ResponseError as e:
                if "NOGOODSLAVE" not in str(e) or time.monotonic() > deadline:
                    raise
                time.sleep(0.2)
    finally:
        c.close()


def _status(connector: int, status: str) -> dict[str, object]:
    return {"connectorId": connector, "errorCode": "NoError", "status": status}


def _key_count(port: int) -> int:
    c = redis.Redis(port=port, socket_timeout=2)
    try:
        return int(c.dbsize())
    finally:
        c.close()


async def _reset_through(other: str, ws: aiohttp.ClientWebSocketResponse, node: str) -> None:
    """An admin call sent to another replica, which forwards it on the fleet channel to the charger's node."""
    call = asyncio.create_task(admin_call(other, "CP-S1", "Reset", {"type": "Soft"}))
    frame = await answer_reset(ws)
    assert frame[2:] == ["Reset", {"type": "Soft"}]
    assert await call == (200, {"result": {"status": "Accepted"}, "node": node})


async def test_the_store_finds_the_master_through_sentinel_and_follows_a_failover(sentinelled: Sentinelled) -> None:
    s = sentinelled
    assert s.master_port() == s.master
    async with (
        stub_csms(lambda c, a, p: {}) as csms,
        gateway(make_config({"a": csms.url}, store=s.url)) as gw,
        gateway(make_config({"a": csms.url}, store=s.url)) as other,
        raw_charger(gw.charger_url(), "CP-S1") as ws,
    ):
        await _reset_through(other.admin_url(), ws, gw.hub.node)
        await ws.send_str(json.dumps([2, "s1", "StatusNotification", _status(1, "Charging")]))
        assert (await recv_json(ws))[:2] == [3, "s1"]
        assert await gw.hub.writer.flush(10)
        assert await gw.hub.store.get_statuses("CP-S1") == {"1": _status(1, "Charging")}
        assert _key_count(s.master) > 0  # on the master Sentinel named, not on a default localhost:6379

        # Sentinel fails the master over to the replica; the old master becomes a read-only replica
        await asyncio.to_thread(_fail_over, s)
        await asyncio.to_thread(_wait, lambda: s.master_port() == s.replica, "no failover", 40.0)
        await asyncio.to_thread(
            _wait, lambda: _replication(s.master).get("role") == "slave", "the old master did not step down", 40.0
        )

        # the session lives on, and what follows lands on the new master
        await ws.send_str(json.dumps([2, "s2", "StatusNotification", _status(2, "Faulted")]))
        assert (await recv_json(ws))[:2] == [3, "s2"]
        await ws.send_str('[2,"h1","Heartbeat",{}]')
        assert (await recv_json(ws))[:2] == [3, "h1"]
        await _reset_through(other.admin_url(), ws, gw.hub.node)  # the replicas' fleet channel too
        assert await gw.hub.writer.flush(20)
        want = {"1": _status(1, "Charging"), "2": _status(2, "Faulted")}
        assert await gw.hub.store.get_statuses("CP-S1") == want
        # a charger that connects after the failover is admitted, its state on the new master
        async with raw_charger(gw.charger_url(), "CP-S2") as ws2:
            await ws2.send_str(json.dumps([2, "t1", "StatusNotification", _status(1, "Available")]))
            assert (await recv_json(ws2))[:2] == [3, "t1"]
            assert await gw.hub.writer.flush(20)
            assert await gw.hub.store.get_statuses("CP-S2") == {"1": _status(1, "Available")}
        # read back without the gateway, from the new master: the gateway wrote there, not to the old one
        new = redis.asyncio.Redis(port=s.replica)
        try:
            keys = await new.keys("*CP-S2*")
        finally:
            await new.aclose()
        assert keys, "CP-S2's state is not on the new master"
        m = await get_metrics(gw.admin_url())
        assert metric(m, "ocppgw_store_up") == 1.0
