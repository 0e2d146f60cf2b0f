"""Scale-out over real sockets and a real redis-server: replicas (in-process gateways with their own node ids, and
``python -m gateway run`` subprocesses where a process must die), worker processes, drain window."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml

from gateway.config import Config, ConfigError, parse_config
from gateway.store import open_store
from tests.e2e.test_gateway import get_metrics, metric
from tests.helpers import gateway, make_config, raw_charger, recv_json, stub_csms

ROOT = Path(__file__).resolve().parents[2]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def admin_call(admin_url: str, cid: str, action: str, payload: dict[str, Any]) -> tuple[int, Any]:
    async with (
        aiohttp.ClientSession() as http,
        http.post(f"{admin_url}/api/chargers/{cid}/call", json={"action": action, "payload": payload}) as r,
    ):
        return r.status, await r.json()


async def fleet(admin_url: str) -> dict[str, Any]:
    async with aiohttp.ClientSession() as http, http.get(f"{admin_url}/api/chargers") as r:
        body = await r.json()
    return {c["charger_id"]: c for c in body["chargers"]}


async def answer_reset(ws: aiohttp.ClientWebSocketResponse) -> list[Any]:
    frame = await recv_json(ws)
    await ws.send_str(json.dumps([3, frame[1], {"status": "Accepted"}]))
    return frame


def with_ttl(cfg: Config, ttl_s: float) -> Config:
    return replace(cfg, store=replace(cfg.store, owner_ttl_s=ttl_s))


async def eventually(check: Any, timeout: float = 5.0, every: float = 0.05) -> None:
    """Poll an async predicate until true (state that lands in another process has no event to wait on here)."""
    async with asyncio.timeout(timeout):
        while not await check():
            await asyncio.sleep(every)


# ----------------------------------------------------------------------------------------------- replicas


async def test_admin_call_through_another_replica_reaches_the_charger(redis_url: str) -> None:
    async with stub_csms() as csms:
        cfg = make_config({"a": csms.url}, store=redis_url)
        async with gateway(cfg) as a, gateway(cfg) as b:
            assert a.hub.node != b.hub.node
            async with raw_charger(a.charger_url(), "CP-1") as ws:
                call = asyncio.create_task(admin_call(b.admin_url(), "CP-1", "Reset", {"type": "Soft"}))
                frame = await answer_reset(ws)
                assert frame[2:] == ["Reset", {"type": "Soft"}]
                status, body = await call
                assert status == 200
                assert body == {"result": {"status": "Accepted"}, "node": a.hub.node}
                listed = await fleet(b.admin_url())
                assert listed["CP-1"]["local"] is False
                assert listed["CP-1"]["connection"]["node"] == a.hub.node
                m = await get_metrics(b.admin_url())
                assert metric(m, "ocppgw_admin_calls_total", outcome="forwarded") == 1
            status, body = await admin_call(b.admin_url(), "CP-1", "Reset", {"type": "Soft"})
            assert status == 404


async def test_reconnect_on_another_replica_closes_the_stale_session(redis_url: str) -> None:
    async with stub_csms() as csms:
        cfg = make_config({"a": csms.url}, store=redis_url)
        async with gateway(cfg) as a, gateway(cfg) as b:
            async with raw_charger(a.charger_url(), "CP-1") as ws_a:
                async with raw_charger(b.charger_url(), "CP-1") as ws_b:
                    # the old session was closed before the new one was admitted
                    msg = await ws_a.receive(timeout=5)
                    assert msg.type is aiohttp.WSMsgType.CLOSE
                    assert (msg.data, msg.extra) == (1000, "replaced")
                    assert "CP-1" not in a.hub.conns
                    assert "CP-1" in b.hub.conns
                    store = open_store(redis_url)
                    try:
                        assert await store.get_owner("CP-1") == b.hub.node
                        await b.hub.writer.flush(5)
                        await a.hub.writer.flush(5)
                        conns = await store.list_connections()
                        assert conns["CP-1"]["node"] == b.hub.node
                    finally:
                        await store.close()
                    m = await get_metrics(a.admin_url())
                    assert metric(m, "ocppgw_chargers_replaced_total") == 1
                    assert metric(m, "ocppgw_disconnects_total", reason="replaced") == 1
                    # and the charger works through B
                    await ws_b.send_str('[2,"h1","Heartbeat",{}]')
                    assert (await recv_json(ws_b))[:2] == [3, "h1"]


async def test_refresh_closes_a_session_whose_charger_another_node_owns(redis_url: str) -> None:
    """A lost takeover message: the periodic refresh finds the charger owned elsewhere and closes it."""
    async with stub_csms() as csms:
        cfg = with_ttl(make_config({"a": csms.url}, store=redis_url), 0.6)
        async with gateway(cfg) as a, raw_charger(a.charger_url(), "CP-1") as ws:
            store = open_store(redis_url)
            try:
                assert await store.claim_owner("CP-1", "some-other-node", 30) == a.hub.node
            finally:
                await store.close()
            msg = await ws.receive(timeout=5)
            assert (msg.type, msg.data, msg.extra) == (aiohttp.WSMsgType.CLOSE, 1000, "replaced")
            m = await get_metrics(a.admin_url())
            assert metric(m, "ocppgw_fleet_events_total", event="ownership_lost") == 1


# ----------------------------------------------------------------------------------------------- processes


def _write_config(path: Path, csms_url: str, redis_url: str, **extra: Any) -> tuple[int, int]:
    port, admin = _free_port(), _free_port()
    raw: dict[str, Any] = {
        "listen": {"host": "127.0.0.1", "port": port, "ping_interval_s": 0},
        "admin": {"host": "127.0.0.1", "port": admin},
        "store": {"url": redis_url, "owner_ttl_s": 1.0},
        "backends": {"a": {"url": csms_url}},
        "routes": [{"match": "*", "primary": "a"}],
        "logging": {"level": "warning", "format": "json"},
        "session": {"shutdown_grace_s": 1},
        **extra,
    }
    path.write_text(yaml.safe_dump(raw))
    return port, admin


@contextlib.contextmanager
def gateway_process(config: Path) -> Iterator[subprocess.Popen[bytes]]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    log = open(config.with_suffix(".log"), "wb")  # noqa: SIM115 - a pipe nobody reads would block the child
    p = subprocess.Popen(
        [sys.executable, "-m", "gateway", "run", "--config", str(config)],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        yield p
    finally:
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
            try:
                p.wait(20)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        log.close()


async def wait_ready(admin_url: str, proc: subprocess.Popen[bytes], timeout: float = 30.0) -> None:
    async def ready() -> bool:
        assert proc.poll() is None, "gateway process exited"
        try:
            async with aiohttp.ClientSession() as http, http.get(admin_url + "/readyz") as r:
                return r.status == 200
        except aiohttp.ClientError:
            return False

    await eventually(ready, timeout, 0.1)


@pytest.mark.slow
async def test_sigkilled_replica_loses_its_chargers_within_the_ttl(redis_url: str, tmp_path: Path) -> None:
    async with stub_csms() as csms:
        port, admin = _write_config(tmp_path / "a.yaml", csms.url, redis_url)
        cfg_b = with_ttl(make_config({"a": csms.url}, store=redis_url), 1.0)
        with gateway_process(tmp_path / "a.yaml") as proc:
            await wait_ready(f"http://127.0.0.1:{admin}", proc)
            async with gateway(cfg_b) as b:
                async with raw_charger(f"ws://127.0.0.1:{port}/ocpp", "CP-K") as ws_a:

                    async def listed() -> bool:
                        return "CP-K" in await fleet(b.admin_url())

                    await eventually(listed)
                    proc.send_signal(signal.SIGKILL)
                    proc.wait(10)
                    loop = asyncio.get_running_loop()
                    killed_at = loop.time()

                    async def dropped() -> bool:
                        return "CP-K" not in await fleet(b.admin_url())

                    await eventually(dropped, timeout=5)
                    assert loop.time() - killed_at < 1.0 + 1.0  # TTL + one poll of margin
                    msg = await ws_a.receive(timeout=5)
                    assert msg.type not in (aiohttp.WSMsgType.TEXT, aiohttp.WSMsgType.BINARY)
                # the charger reconnects to B at once: nobody answers for the dead node, nothing waits for it
                async with asyncio.timeout(3), raw_charger(b.charger_url(), "CP-K") as ws_b:
                    await ws_b.send_str('[2,"h1","Heartbeat",{}]')
                    assert (await recv_json(ws_b))[:2] == [3, "h1"]
                    assert "CP-K" in await fleet(b.admin_url())


@pytest.mark.slow
async def test_workers_share_the_port_and_a_killed_worker_is_restarted(redis_url: str, tmp_path: Path) -> None:
    async with stub_csms() as csms:
        port, admin = _write_config(tmp_path / "w.yaml", csms.url, redis_url, workers=2)
        admin_url = f"http://127.0.0.1:{admin}"
        with gateway_process(tmp_path / "w.yaml") as proc:
            await wait_ready(admin_url, proc)
            m = await get_metrics(admin_url)
            assert metric(m, "ocppgw_workers") == 2
            async with contextlib.AsyncExitStack() as stack:
                chargers = {
                    f"CP-{i}": await stack.enter_async_context(raw_charger(f"ws://127.0.0.1:{port}/ocpp", f"CP-{i}"))
                    for i in range(6)
                }

                async def all_listed() -> bool:
                    return len(await fleet(admin_url)) == 6

                await eventually(all_listed)
                listed = await fleet(admin_url)
                nodes = {c["connection"]["node"] for c in listed.values()}
                assert len(nodes) <= 2
                # summed over the workers
                m = await get_metrics(admin_url)
                assert metric(m, "ocppgw_chargers_connected", ocpp_version="1.6") == 6
                assert metric(m, "ocppgw_connections_total", outcome="accepted") == 6
                # an admin CALL through the main process reaches the charger on its worker
                call = asyncio.create_task(admin_call(admin_url, "CP-0", "Reset", {"type": "Soft"}))
                await answer_reset(chargers["CP-0"])
                status, body = await call
                assert status == 200 and body["result"] == {"status": "Accepted"}
                # kill the worker holding CP-0
                pid = int(listed["CP-0"]["connection"]["node"].split(":")[1])
                os.kill(pid, signal.SIGKILL)
                msg = await chargers["CP-0"].receive(timeout=5)
                assert msg.type not in (aiohttp.WSMsgType.TEXT, aiohttp.WSMsgType.BINARY)  # the socket went away

                async def restarted() -> bool:
                    m = await get_metrics(admin_url)
                    return (
                        metric(m, "ocppgw_worker_restarts_total", exit="signal_9") == 1
                        and metric(m, "ocppgw_workers") == 2
                    )

                await eventually(restarted, timeout=15, every=0.1)
                m = await get_metrics(admin_url)
                # counters of the dead worker are kept in the totals
                assert metric(m, "ocppgw_connections_total", outcome="accepted") >= 6
            # the charger reconnects and is served
            async with raw_charger(f"ws://127.0.0.1:{port}/ocpp", "CP-0") as ws:
                await ws.send_str('[2,"h1","Heartbeat",{}]')
                assert (await recv_json(ws))[:2] == [3, "h1"]
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(20) == 0


def test_workers_need_a_shared_store() -> None:
    raw = {"workers": 2, "backends": {"a": {"url": "ws://x/ocpp"}}, "routes": [{"match": "*", "primary": "a"}]}
    with pytest.raises(ConfigError) as e:
        parse_config(raw, env={})
    assert [p for p, _ in e.value.problems] == ["workers"]
    assert "Redis" in e.value.problems[0][1]
    cfg = parse_config({**raw, "store": {"url": "redis://127.0.0.1:6379/0"}}, env={})
    assert cfg.workers == 2


# ----------------------------------------------------------------------------------------------- drain


@pytest.mark.slow
async def test_drain_spreads_closes_over_the_window() -> None:
    n, window = 5, 1.0
    async with stub_csms() as csms:
        cfg = make_config({"a": csms.url}, session={"drain_window_s": window, "shutdown_grace_s": 0})
        loop = asyncio.get_running_loop()
        closed: dict[str, tuple[float, Any]] = {}

        async def hold(url: str, cid: str, connected: asyncio.Event) -> None:
            async with raw_charger(url, cid) as ws:
                connected.set()
                msg = await ws.receive(timeout=10)
                closed[cid] = (loop.time(), msg.data)

        async with contextlib.AsyncExitStack() as stack:
            gw = await stack.enter_async_context(gateway(cfg))
            events = [asyncio.Event() for _ in range(n)]
            tasks = [asyncio.create_task(hold(gw.charger_url(), f"CP-{i}", events[i])) for i in range(n)]
            async with asyncio.timeout(5):
                for e in events:
                    await e.wait()
            started = loop.time()
        await asyncio.gather(*tasks)
        times = sorted(t for t, _ in closed.values())
        assert {code for _, code in closed.values()} == {1001}
        assert times[-1] - times[0] >= window * (n - 1) / n * 0.8
        assert times[-1] - started < window + 1.0
        gaps = [b - a for a, b in itertools.pairwise(times)]
        assert min(gaps) > window / n * 0.4  # spread, not a burst at the end
