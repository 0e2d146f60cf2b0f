"""Riding through an outage, the operator's side: the unknown-token limit, the journal bounds, the store going away
while riding, and the admin API (token-protected). A raw 1.6 charger and a scriptable CSMS stand-in on loopback,
a real redis-server."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
from aiohttp import web

from gateway.ops.lifecycle import Running, running_gateway
from tests.conftest import RedisServer
from tests.e2e.test_gateway import get_metrics, metric, wait_metric
from tests.helpers import StubCsms, make_config, raw_charger, recv_json

TIMEOUT = 30
TOKEN = "ride-admin-token-0123456789"
BOOT = '[2,"b1","BootNotification",{"chargePointVendor":"V","chargePointModel":"M"}]'
AUTH = {"Authorization": f"Bearer {TOKEN}"}


def answer(cid: str, action: str, payload: dict[str, Any]) -> dict[str, Any]:
    if action == "BootNotification":
        return {"status": "Accepted", "currentTime": "2027-01-01T00:00:00Z", "interval": 60}
    if action == "StartTransaction":
        return {"transactionId": 77, "idTagInfo": {"status": "Accepted"}}
    return {}


@contextlib.asynccontextmanager
async def riding(redis_url: str, offline: dict[str, Any], **session: Any) -> AsyncIterator[tuple[StubCsms, Running]]:
    """A gateway whose charger RO-1 booted (the interval learned), then its CSMS stopped."""
    csms = StubCsms(answer=answer, subprotocols=("ocpp1.6",))
    await csms.start()
    backend = {"url": csms.url, "reconnect_grace_s": 0.1, "replay_per_s": 200}
    config = make_config(
        {"a": backend}, store=redis_url, admin={"token": TOKEN}, session={"shutdown_grace_s": 1, **session},
        routes=[{"match": "*", "primary": "a", "offline": {"mode": "ride_through", **offline}}],
    )  # fmt: skip
    try:
        async with running_gateway(config) as running:
            yield csms, running
    finally:
        await csms.stop()


async def view(running: Running) -> dict[str, Any]:
    async with aiohttp.ClientSession(headers=AUTH) as http, http.get(f"{running.admin_url()}/api/ride-through") as r:
        assert r.status == 200
        return {c["charger_id"]: c for c in (await r.json())["chargers"]}


async def call(ws: aiohttp.ClientWebSocketResponse, uid: str, action: str, payload: dict[str, Any]) -> list[Any]:
    await ws.send_str(json.dumps([2, uid, action, payload]))
    return await recv_json(ws)


async def boot_then_outage(ws: aiohttp.ClientWebSocketResponse, csms: StubCsms, running: Running) -> None:
    await ws.send_str(BOOT)
    assert (await recv_json(ws))[2]["interval"] == 60
    await csms.stop()

    async def is_riding() -> bool:
        return (await view(running)).get("RO-1", {}).get("state") == "riding"

    while not await is_riding():
        await asyncio.sleep(0.05)


async def test_an_unknown_token_accepted_with_a_limit_is_stopped_at_it(redis_url: str) -> None:
    offline = {"unknown_token": {"policy": "accept_limited", "max_energy_wh": 1000}}
    async with asyncio.timeout(TIMEOUT), riding(redis_url, offline) as (csms, running):
        async with raw_charger(running.charger_url(), "RO-1") as ws:
            await boot_then_outage(ws, csms, running)
            start = await call(ws, "s1", "StartTransaction", {"connectorId": 1, "idTag": "STRANGER", "meterStart": 0,
                                                              "timestamp": "2027-01-01T00:00:00Z"})  # fmt: skip
            assert start[2]["idTagInfo"] == {"status": "Accepted"}  # unknown, accepted: the operator's risk
            tx = start[2]["transactionId"]
            sample = [{"timestamp": "2027-01-01T00:05:00Z", "sampledValue": [{"value": "600"}]}]
            mv = {"connectorId": 1, "transactionId": tx, "meterValue": sample}
            assert (await call(ws, "m1", "MeterValues", mv)) == [3, "m1", {}]
            mv["meterValue"] = [{"timestamp": "2027-01-01T00:10:00Z", "sampledValue": [{"value": "1200"}]}]
            await ws.send_str(json.dumps([2, "m2", "MeterValues", mv]))
            frames = [await recv_json(ws), await recv_json(ws)]
            assert [3, "m2", {}] in frames
            (stop,) = [f for f in frames if f[0] == 2]
            assert stop[2:] == ["RemoteStopTransaction", {"transactionId": tx}]  # the limit reached: stopped
            await ws.send_str(json.dumps([3, stop[1], {"status": "Accepted"}]))
            metrics = await get_metrics(running.admin_url())
            assert metric(metrics, "ocppgw_ride_through_stops_total", backend="a", reason="limit") == 1
            await csms.start(csms.port)

            async def replayed() -> bool:
                return (await view(running))["RO-1"]["state"] == "live"

            while not await replayed():
                await asyncio.sleep(0.05)
            assert [f[1] for c, f in csms.received if f[0] == 2 and f[1] != "b1"] == ["s1", "m1", "m2"]
            assert not [t for _, t in csms.texts if stop[1] in t]  # the charger's answer to the stop stayed here


async def test_past_the_journal_bound_new_transactions_are_refused_and_counted(redis_url: str) -> None:
    async with asyncio.timeout(TIMEOUT), riding(redis_url, {"journal": {"max_len": 2}}) as (csms, running):
        async with raw_charger(running.charger_url(), "RO-1") as ws:
            await boot_then_outage(ws, csms, running)
            for n in range(2):
                assert (await call(ws, f"h{n}", "Heartbeat", {}))[0] == 3
            refused = await call(ws, "s1", "StartTransaction", {"connectorId": 1, "idTag": "T", "meterStart": 0,
                                                                "timestamp": "2027-01-01T00:00:00Z"})  # fmt: skip
            assert refused[:3] == [4, "s1", "InternalError"]
            assert (await call(ws, "h2", "Heartbeat", {}))[0] == 3  # the running traffic goes on, up to twice the bound
            assert (await call(ws, "h3", "Heartbeat", {}))[0] == 3
            assert (await call(ws, "h4", "Heartbeat", {}))[:3] == [4, "h4", "InternalError"]
            metrics = await get_metrics(running.admin_url())
            assert metric(metrics, "ocppgw_ride_through_messages_total", backend="a", outcome="journal_full") == 2
            assert metric(metrics, "ocppgw_ride_through_journal_depth", backend="a") == 4
            assert metric(metrics, "ocppgw_ride_through_chargers", backend="a") == 1
            assert metric(metrics, "ocppgw_ride_through_journal_age_seconds", backend="a") >= 0
            assert (await view(running))["RO-1"]["journal_depth"] == 4


async def test_with_the_store_down_the_gateway_does_not_answer(redis_server: RedisServer, redis_url: str) -> None:
    async with asyncio.timeout(TIMEOUT), riding(redis_url, {}, call_timeout_s=1) as (csms, running):
        async with raw_charger(running.charger_url(), "RO-1") as ws:
            await boot_then_outage(ws, csms, running)
            redis_server.stop()
            await ws.send_str('[2,"h1","Heartbeat",{}]')
            await wait_metric(running.admin_url(), "ocppgw_ride_through_messages_total", 1, backend="a",
                              outcome="store_unavailable")  # fmt: skip
            redis_server.start()
            await ws.send_str('[2,"h2","Heartbeat",{}]')  # waits behind h1 until h1's call_timeout_s, then journalled
            got = await recv_json(ws, timeout=10)
            assert got[:2] == [3, "h2"]  # h1 never got an answer: the gateway had not journalled it
            await csms.start(csms.port)

            async def live() -> bool:
                return (await view(running))["RO-1"]["state"] == "live"

            while not await live():
                await asyncio.sleep(0.05)
            assert [f[1] for c, f in csms.received if f[0] == 2 and f[1] != "b1"] == ["h2"]


async def test_a_short_store_restart_delays_the_answer_and_loses_nothing(
    redis_server: RedisServer, redis_url: str
) -> None:
    """Redis away for less than half the CALL timeout: the journal write is tried again, the charger gets its answer
    late instead of none, and the CALL reaches the CSMS once."""
    async with asyncio.timeout(TIMEOUT), riding(redis_url, {}, call_timeout_s=8) as (csms, running):
        async with raw_charger(running.charger_url(), "RO-1") as ws:
            await boot_then_outage(ws, csms, running)
            redis_server.stop()
            await ws.send_str('[2,"h1","Heartbeat",{}]')
            await asyncio.sleep(1.0)
            redis_server.start()
            got = await recv_json(ws, timeout=10)
            assert got[:2] == [3, "h1"]  # written once Redis was back, then answered
            metrics = await get_metrics(running.admin_url())
            assert metric(metrics, "ocppgw_ride_through_messages_total", backend="a", outcome="journalled") == 1
            assert metric(metrics, "ocppgw_ride_through_messages_total", backend="a",
                          outcome="store_unavailable") == 0  # fmt: skip
            await csms.start(csms.port)
            await wait_metric(running.admin_url(), "ocppgw_ride_through_messages_total", 1, backend="a",
                              outcome="replayed")  # fmt: skip
            assert [f[1] for c, f in csms.received if f[0] == 2 and f[1] != "b1"] == ["h1"]


async def test_an_entry_written_twice_reaches_the_csms_once(redis_url: str) -> None:
    """A journal write whose reply was lost is written again (the entry twice in a row, one unique id): the replay
    sends it once, removes both, and counts the repeat."""
    async with asyncio.timeout(TIMEOUT), riding(redis_url, {}) as (csms, running):
        async with raw_charger(running.charger_url(), "RO-1") as ws:
            await boot_then_outage(ws, csms, running)
            for n in range(2):
                assert (await call(ws, f"h{n}", "Heartbeat", {}))[0] == 3
            ride = running.hub.conns["RO-1"].ride
            assert ride is not None
            outbox = running.hub.store.outbox()
            entries = await outbox.read(ride.stream, 10)
            assert [e.data["u"] for e in entries] == ["h0", "h1"]  # type: ignore[index]
            await outbox.append(ride.stream, [entries[1].data], 1_000_000_000, 0)  # the journal: h0 h1 h1
            ride.depth += 1
            await csms.start(csms.port)

            async def live() -> bool:
                return (await view(running))["RO-1"]["state"] == "live"

            while not await live():
                await asyncio.sleep(0.05)
            assert [f[1] for c, f in csms.received if f[0] == 2 and f[1] != "b1"] == ["h0", "h1"]
            assert await outbox.read(ride.stream, 10) == []
            metrics = await get_metrics(running.admin_url())
            assert metric(metrics, "ocppgw_ride_through_messages_total", backend="a", outcome="repeat_skipped") == 1
            assert metric(metrics, "ocppgw_ride_through_messages_total", backend="a", outcome="replayed") == 2


async def test_admin_api_lists_drops_and_replays_behind_its_token(redis_url: str) -> None:
    async with asyncio.timeout(TIMEOUT), riding(redis_url, {}) as (csms, running):
        base = running.admin_url()
        async with raw_charger(running.charger_url(), "RO-1") as ws:
            await boot_then_outage(ws, csms, running)
            for n in range(3):
                assert (await call(ws, f"h{n}", "Heartbeat", {}))[0] == 3
            async with aiohttp.ClientSession() as http:
                async with http.get(f"{base}/api/ride-through") as r:
                    assert r.status == 401
                async with http.post(f"{base}/api/ride-through/RO-1/drop") as r:
                    assert r.status == 401
            got = (await view(running))["RO-1"]
            assert (got["state"], got["journal_depth"], got["link_up"]) == ("riding", 3, False)
            async with aiohttp.ClientSession(headers=AUTH) as http:
                async with http.post(f"{base}/api/ride-through/NOPE/drop") as r:
                    assert r.status == 404
                async with http.post(f"{base}/api/ride-through/RO-1/drop") as r:
                    assert r.status == 200 and await r.json() == {"dropped": 3}
                async with http.get(f"{base}/api/ride-through?state=riding") as r:
                    assert [c["journal_depth"] for c in (await r.json())["chargers"]] == [0]
                await csms.start(csms.port)
                async with http.post(f"{base}/api/ride-through/RO-1/replay") as r:
                    assert r.status == 202

            async def live() -> bool:
                return (await view(running))["RO-1"]["state"] == "live"

            while not await live():
                await asyncio.sleep(0.05)
            assert (await call(ws, "h9", "Heartbeat", {}))[:2] == [3, "h9"]
            assert [f[1] for c, f in csms.received if f[0] == 2 and f[1] != "b1"] == ["h9"]  # dropped: never sent
            metrics = await get_metrics(base)
            assert metric(metrics, "ocppgw_ride_through_messages_total", backend="a", outcome="dropped") == 3


async def test_a_csms_that_refuses_the_charger_is_not_ridden_through(redis_url: str) -> None:
    """An HTTP 403 to the upstream upgrade is a reachable CSMS saying no: the charger gets 502, as without ride-through;
    only an unreachable one (nothing listening) admits it."""

    async def refuse(request: web.Request) -> web.Response:
        return web.Response(status=403)

    app = web.Application()
    app.router.add_get("/ocpp/{cid}", refuse)
    runner = web.AppRunner(app, handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    config = make_config(
        {"a": {"url": f"ws://127.0.0.1:{port}/ocpp"}}, store=redis_url,
        routes=[{"match": "*", "primary": "a", "offline": {"mode": "ride_through"}}],
    )  # fmt: skip
    try:
        async with asyncio.timeout(TIMEOUT), running_gateway(config) as running:
            async with aiohttp.ClientSession() as http:
                with contextlib.suppress(aiohttp.WSServerHandshakeError):
                    async with http.ws_connect(f"{running.charger_url()}/RO-9", protocols=("ocpp1.6",)):
                        raise AssertionError("admitted although the CSMS refused it")
            metrics = await get_metrics(running.admin_url())
            assert metric(metrics, "ocppgw_connections_total", outcome="backend_unavailable") == 1
            await site.stop()  # now nothing listens there: unreachable, so ridden through
            async with raw_charger(running.charger_url(), "RO-9") as ws:
                assert (await call(ws, "h1", "Heartbeat", {}))[:2] == [3, "h1"]
    finally:
        await runner.cleanup()
