"""Mirrors with durable outboxes, shadow comparison, mirror CALLs, live cutover, batch cutover, hot reload."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml

from gateway.fanout.spool import SPOOL_MAX_WAIT_S
from gateway.ops.lifecycle import running_gateway
from tests.conftest import RedisServer
from tests.e2e.test_gateway import get_metrics, metric, wait_metric
from tests.helpers import StubCsms, make_config, raw_charger, recv_json, stub_csms

BOOT = {"chargePointVendor": "V", "chargePointModel": "M"}
ACCEPT = {
    "status": "Accepted",
    "currentTime": "2026-01-01T00:00:00Z",
    "interval": 300,
    "idTagInfo": {"status": "Accepted"},
}


def answers(cid: str, action: str, payload: dict[str, Any]) -> dict[str, Any]:
    return ACCEPT


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def call(ws: aiohttp.ClientWebSocketResponse, uid: str, action: str, payload: dict[str, Any]) -> list[Any]:
    await ws.send_str(json.dumps([2, uid, action, payload]))
    return await recv_json(ws)


def mirror_config(primary: str, mirror_url: str, store: str, **route: Any) -> Any:
    return make_config(
        {"a": primary, "m": {"url": mirror_url, "connect_timeout_s": 1}},
        store=store,
        routes=[{"match": "*", "primary": "a", "mirrors": ["m"], **route}],
    )


async def test_mirror_down_then_up_gets_every_copy_in_order_once_boot_first(redis_url: str) -> None:
    mirror_port = free_port()
    async with stub_csms(answers) as primary:
        cfg = mirror_config(primary.url, f"ws://127.0.0.1:{mirror_port}/ocpp", redis_url)
        async with running_gateway(cfg) as gw, raw_charger(gw.charger_url(), "CP-M1") as ws:
            await call(ws, "b", "BootNotification", BOOT)
            for i in range(10):
                assert (await call(ws, f"h{i}", "Heartbeat", {}))[
                    0
                ] == 3  # the primary answers while the mirror is down
            await wait_metric(gw.admin_url(), "ocppgw_outbox_depth", 11, backend="m")
            mirror = StubCsms(answer=answers)
            await mirror.start(mirror_port)
            try:
                await mirror.wait_for(lambda: len(mirror.actions("CP-M1")) >= 11, timeout=15)
                await asyncio.sleep(0.3)
                got = mirror.actions("CP-M1")
                assert got == ["BootNotification"] + ["Heartbeat"] * 10  # in order, none twice
                await wait_metric(gw.admin_url(), "ocppgw_mirror_copies_total", 11, backend="m", result="delivered")
                assert primary.actions("CP-M1") == got
            finally:
                await mirror.stop()


async def test_many_chargers_mirror_down_then_up_each_gets_its_copies_in_order_once(redis_url: str) -> None:
    """While the mirror is down the feeds of all chargers sleep and their copies go to the outbox in groups; when it
    is back (one probe for all of them) every charger's copies arrive, in order, none twice, and the backlog empties."""
    mirror_port, n, k = free_port(), 12, 4
    mirror = StubCsms(answer=answers)
    async with stub_csms(answers) as primary:
        cfg = mirror_config(primary.url, f"ws://127.0.0.1:{mirror_port}/ocpp", redis_url)
        try:
            async with running_gateway(cfg) as gw, contextlib.AsyncExitStack() as stack:
                chargers = [
                    await stack.enter_async_context(raw_charger(gw.charger_url(), f"CP-MM{i}")) for i in range(n)
                ]
                for i, ws in enumerate(chargers):
                    await call(ws, f"b{i}", "BootNotification", BOOT)
                for j in range(k):
                    for i, ws in enumerate(chargers):
                        status = {"connectorId": 1, "errorCode": "NoError", "status": "Available", "info": f"{i}-{j}"}
                        assert (await call(ws, f"s{i}-{j}", "StatusNotification", status))[0] == 3
                await wait_metric(gw.admin_url(), "ocppgw_outbox_depth", n * (k + 1), backend="m")
                await asyncio.sleep(SPOOL_MAX_WAIT_S + 0.5)  # the spool was written to Redis
                await mirror.start(mirror_port)
                await mirror.wait_for(
                    lambda: all(len(mirror.actions(f"CP-MM{i}")) >= k + 1 for i in range(n)), timeout=40
                )
                await asyncio.sleep(0.3)
                for i in range(n):
                    frames = [f for c, f in mirror.received if c == f"CP-MM{i}" and f[0] == 2]
                    assert [f[2] for f in frames] == ["BootNotification"] + ["StatusNotification"] * k
                    assert [f[3].get("info") for f in frames[1:]] == [f"{i}-{j}" for j in range(k)]
                await wait_metric(gw.admin_url(), "ocppgw_outbox_depth", 0, backend="m")
        finally:
            await mirror.stop()  # after the gateway: its mirror links would reconnect to a stopping server


async def test_copies_queued_before_a_restart_still_arrive(redis_url: str) -> None:
    mirror_port = free_port()
    async with stub_csms(answers) as primary:
        cfg = mirror_config(primary.url, f"ws://127.0.0.1:{mirror_port}/ocpp", redis_url)
        async with running_gateway(cfg) as gw, raw_charger(gw.charger_url(), "CP-M2") as ws:
            await call(ws, "b", "BootNotification", BOOT)
            for i in range(5):
                await call(
                    ws, f"s{i}", "StatusNotification", {"connectorId": 1, "errorCode": "NoError", "status": "Available"}
                )
        # the gateway stopped with 6 copies undelivered; a new one starts, the mirror is up, the charger returns
        mirror = StubCsms(answer=answers)
        await mirror.start(mirror_port)
        try:
            async with running_gateway(cfg) as gw, raw_charger(gw.charger_url(), "CP-M2"):
                await mirror.wait_for(lambda: len(mirror.actions("CP-M2")) >= 6, timeout=15)
                assert mirror.actions("CP-M2") == ["BootNotification"] + ["StatusNotification"] * 5
        finally:
            await mirror.stop()


async def test_copies_spooled_by_a_stopped_gateway_come_before_the_next_ones(redis_url: str) -> None:
    """While the mirror is down a gateway spools its chargers' copies and stops; the charger comes back (the mirror
    still down) and sends more; when the mirror is back it gets them all, the stopped gateway's first, in order."""
    mirror_port = free_port()
    status = {"connectorId": 1, "errorCode": "NoError", "status": "Available"}
    async with stub_csms(answers) as primary:
        cfg = mirror_config(primary.url, f"ws://127.0.0.1:{mirror_port}/ocpp", redis_url)
        async with running_gateway(cfg) as gw, raw_charger(gw.charger_url(), "CP-M3") as ws:
            await call(ws, "b", "BootNotification", BOOT)
            for i in range(3):
                await call(ws, f"s{i}", "StatusNotification", {**status, "info": f"first-{i}"})
            await wait_metric(gw.admin_url(), "ocppgw_outbox_depth", 4, backend="m")
        async with running_gateway(cfg) as gw:
            async with raw_charger(gw.charger_url(), "CP-M3") as ws:
                for i in range(2):
                    await call(ws, f"t{i}", "StatusNotification", {**status, "info": f"second-{i}"})
                mirror = StubCsms(answer=answers)
                await mirror.start(mirror_port)
                try:
                    await mirror.wait_for(lambda: len(mirror.actions("CP-M3")) >= 6, timeout=20)
                    await asyncio.sleep(0.3)
                    frames = [f for c, f in mirror.received if c == "CP-M3" and f[0] == 2]
                    assert [f[2] for f in frames] == ["BootNotification"] + ["StatusNotification"] * 5
                    assert [f[3].get("info") for f in frames[1:]] == [
                        "first-0", "first-1", "first-2", "second-0", "second-1"
                    ]  # fmt: skip
                    await wait_metric(gw.admin_url(), "ocppgw_outbox_depth", 0, backend="m")
                    await wait_metric(gw.admin_url(), "ocppgw_mirror_copies_total", 6, backend="m", result="delivered")
                finally:
                    await mirror.stop()


async def test_redis_down_while_the_mirror_is_down_loses_no_copy(redis_url: str, redis_server: RedisServer) -> None:
    """The spool cannot be written (Redis stopped): the charger is answered all the same, the failure is counted and
    the copies stay in memory, retried; with Redis and the mirror back, the mirror gets all of them, in order."""
    mirror_port = free_port()
    status = {"connectorId": 1, "errorCode": "NoError", "status": "Available"}
    async with stub_csms(answers) as primary:
        cfg = mirror_config(primary.url, f"ws://127.0.0.1:{mirror_port}/ocpp", redis_url)
        mirror = StubCsms(answer=answers)
        try:
            async with running_gateway(cfg) as gw, raw_charger(gw.charger_url(), "CP-M4") as ws:
                redis_server.stop()
                try:
                    assert (await call(ws, "b", "BootNotification", BOOT))[0] == 3
                    for i in range(3):
                        assert (await call(ws, f"s{i}", "StatusNotification", {**status, "info": str(i)}))[0] == 3
                    await wait_metric(gw.admin_url(), "ocppgw_store_errors_total", 1, op="outbox")
                    await wait_metric(gw.admin_url(), "ocppgw_outbox_depth", 4, backend="m")
                finally:
                    redis_server.start()
                await mirror.start(mirror_port)
                await mirror.wait_for(lambda: len(mirror.actions("CP-M4")) >= 4, timeout=20)
                await asyncio.sleep(0.3)
                frames = [f for c, f in mirror.received if c == "CP-M4" and f[0] == 2]
                assert [f[2] for f in frames] == ["BootNotification"] + ["StatusNotification"] * 3
                assert [f[3].get("info") for f in frames[1:]] == ["0", "1", "2"]
                await wait_metric(gw.admin_url(), "ocppgw_outbox_depth", 0, backend="m")
        finally:
            await mirror.stop()


async def test_the_outbox_bound_trims_the_oldest_spooled_copies_and_counts_them(redis_url: str) -> None:
    mirror_port = free_port()
    status = {"connectorId": 1, "errorCode": "NoError", "status": "Available"}
    async with stub_csms(answers) as primary:
        cfg = mirror_config(
            primary.url, f"ws://127.0.0.1:{mirror_port}/ocpp", redis_url, outbox={"max_len": 3, "max_age_s": 3600}
        )
        mirror = StubCsms(answer=answers)
        try:
            async with running_gateway(cfg) as gw, raw_charger(gw.charger_url(), "CP-M5") as ws:
                await call(ws, "b", "BootNotification", BOOT)
                for i in range(5):
                    await call(ws, f"s{i}", "StatusNotification", {**status, "info": str(i)})
                await wait_metric(gw.admin_url(), "ocppgw_mirror_copies_total", 3, backend="m", result="trimmed")
                await wait_metric(gw.admin_url(), "ocppgw_outbox_depth", 3, backend="m")
                await mirror.start(mirror_port)
                await mirror.wait_for(lambda: len(mirror.actions("CP-M5")) >= 4, timeout=20)
                await asyncio.sleep(0.3)
                frames = [f for c, f in mirror.received if c == "CP-M5" and f[0] == 2]
                # the boot was trimmed with the oldest copies: the mirror gets the stored one first, then the newest 3
                assert [f[2] for f in frames] == ["BootNotification"] + ["StatusNotification"] * 3
                assert [f[3].get("info") for f in frames[1:]] == ["2", "3", "4"]
                await wait_metric(gw.admin_url(), "ocppgw_mirror_copies_total", 3, backend="m", result="delivered")
        finally:
            await mirror.stop()


async def test_a_mirror_that_never_answers_does_not_slow_the_primary_path() -> None:
    async with stub_csms(answers) as primary, stub_csms(lambda c, a, p: None) as silent:
        cfg = mirror_config(primary.url, silent.url, "memory://")
        async with running_gateway(cfg) as gw, raw_charger(gw.charger_url(), "CP-M3") as ws:
            await call(ws, "b", "BootNotification", BOOT)
            for i in range(30):
                assert (await call(ws, f"h{i}", "Heartbeat", {}))[:2] == [3, f"h{i}"]
            assert len(primary.actions("CP-M3")) == 31
            await silent.wait_for(lambda: len(silent.actions("CP-M3")) >= 1)
            assert len(silent.actions("CP-M3")) == 1  # one outstanding copy at a time, the rest wait in the outbox


async def test_shadow_divergence_is_counted_when_the_mirror_rejects_an_idtag_the_primary_accepts() -> None:
    def strict(cid: str, action: str, payload: dict[str, Any]) -> dict[str, Any]:
        return {"idTagInfo": {"status": "Invalid"}} if action == "Authorize" else ACCEPT

    async with stub_csms(answers) as primary, stub_csms(strict) as mirror:
        cfg = mirror_config(primary.url, mirror.url, "memory://")
        async with running_gateway(cfg) as gw, raw_charger(gw.charger_url(), "CP-M4") as ws:
            await call(ws, "b", "BootNotification", BOOT)
            answer = await call(ws, "a1", "Authorize", {"idTag": "TAG1"})
            assert answer[2]["idTagInfo"]["status"] == "Accepted"  # the charger gets the primary's decision
            await wait_metric(
                gw.admin_url(), "ocppgw_shadow_divergences_total", 1, action="Authorize", primary="a", mirror="m"
            )
            m = await get_metrics(gw.admin_url())
            assert metric(m, "ocppgw_shadow_divergences_total", action="BootNotification") == 0


@pytest.mark.parametrize("policy", ["deny", "allow"])
async def test_mirror_calls_to_the_charger_follow_the_policy(policy: str) -> None:
    async with stub_csms(answers) as primary, stub_csms(answers) as mirror:
        extra = {} if policy == "deny" else {"mirror_calls": {"allow": ["GetConfiguration"]}}
        cfg = mirror_config(primary.url, mirror.url, "memory://", **extra)
        async with running_gateway(cfg) as gw, raw_charger(gw.charger_url(), "CP-M5") as ws:
            await call(ws, "b", "BootNotification", BOOT)
            await mirror.wait_for(lambda: "CP-M5" in mirror.sockets)
            await mirror.sockets["CP-M5"].send_str('[2,"mc1","GetConfiguration",{}]')
            if policy == "deny":
                await mirror.wait_for(lambda: any(f[0] == 4 for _, f in mirror.received))
                err = next(f for _, f in mirror.received if f[0] == 4)
                assert err[1:3] == ["mc1", "SecurityError"]
                await wait_metric(gw.admin_url(), "ocppgw_mirror_calls_total", 1, backend="m", result="denied")
            else:
                frame = await recv_json(ws)
                assert frame[2:] == ["GetConfiguration", {}] and frame[1] != "mc1"  # the gateway's own id
                await ws.send_str(json.dumps([3, frame[1], {"configurationKey": []}]))
                await mirror.wait_for(lambda: any(f[0] == 3 and f[1] == "mc1" for _, f in mirror.received))


async def put_route(admin: str, cid: str, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    async with aiohttp.ClientSession() as http, http.put(f"{admin}/api/chargers/{cid}/route", json=body) as r:
        return r.status, await r.json()


async def test_live_cutover_gives_the_new_primary_boot_and_statuses_first_then_traffic(redis_url: str) -> None:
    async with stub_csms(answers) as a, stub_csms(answers) as b:
        cfg = make_config({"a": a.url, "b": b.url}, store=redis_url)
        async with running_gateway(cfg) as gw, raw_charger(gw.charger_url(), "CP-C1") as ws:
            await call(ws, "b1", "BootNotification", BOOT)
            for c, st in ((1, "Charging"), (2, "Available")):
                await call(ws, f"s{c}", "StatusNotification", {"connectorId": c, "errorCode": "NoError", "status": st})
            await gw.hub.writer.flush(5)
            status, body = await put_route(gw.admin_url(), "CP-C1", {"primary": "b", "mirrors": ["a"]})
            assert (status, body["result"]) == (200, "moved"), body
            assert not ws.closed
            assert (await call(ws, "h1", "Heartbeat", {}))[:2] == [3, "h1"]
            assert b.actions("CP-C1") == ["BootNotification", "StatusNotification", "StatusNotification", "Heartbeat"]
            sts = [f[3]["status"] for c, f in b.received if f[0] == 2 and f[2] == "StatusNotification"]
            assert sorted(sts) == ["Available", "Charging"]
            async with aiohttp.ClientSession() as http, http.get(gw.admin_url() + "/api/chargers/CP-C1") as r:
                route = (await r.json())["route"]
            assert route == {"primary": "b", "mirrors": ["a"], "origin": "override"}
            await gw.hub.writer.flush(5)  # the connection as the store has it says where the charger goes now
            async with aiohttp.ClientSession() as http, http.get(gw.admin_url() + "/api/chargers/CP-C1") as r:
                conn = (await r.json())["connection"]
            assert (conn["backend"], conn["route"], conn["mirrors"]) == ("b", "override", ["a"])
            await a.wait_for(lambda: a.actions("CP-C1")[-1:] == ["Heartbeat"])  # the old primary is now a mirror
            m = await get_metrics(gw.admin_url())
            assert metric(m, "ocppgw_cutovers_total", result="moved") == 1
            # rollback is the same call in reverse
            status, body = await put_route(gw.admin_url(), "CP-C1", {"primary": "a", "mirrors": []})
            assert (status, body["result"]) == (200, "moved")
            assert (await call(ws, "h2", "Heartbeat", {}))[:2] == [3, "h2"]
            assert a.actions("CP-C1")[-1] == "Heartbeat" and b.actions("CP-C1")[-1] == "Heartbeat"


async def test_cutover_to_an_unreachable_backend_is_refused_and_the_charger_stays() -> None:
    async with stub_csms(answers) as a:
        cfg = make_config({"a": a.url, "dead": {"url": "ws://127.0.0.1:1/ocpp", "connect_timeout_s": 1}})
        async with running_gateway(cfg) as gw, raw_charger(gw.charger_url(), "CP-C2") as ws:
            await call(ws, "b1", "BootNotification", BOOT)
            status, body = await put_route(gw.admin_url(), "CP-C2", {"primary": "dead"})
            assert status == 409 and body["result"] == "unreachable"
            assert (await call(ws, "h1", "Heartbeat", {}))[:2] == [3, "h1"]
            assert a.actions("CP-C2") == ["BootNotification", "Heartbeat"]
            status, body = await put_route(gw.admin_url(), "CP-C2", {"primary": "nope"})
            assert status == 400


async def test_cutover_refused_when_the_new_primary_rejects_the_boot() -> None:
    reject = lambda c, a, p: {"status": "Rejected", "currentTime": "2026-01-01T00:00:00Z", "interval": 60}
    async with stub_csms(answers) as a, stub_csms(reject) as b:
        cfg = make_config({"a": a.url, "b": b.url})
        async with running_gateway(cfg) as gw, raw_charger(gw.charger_url(), "CP-C3") as ws:
            await call(ws, "b1", "BootNotification", BOOT)
            await gw.hub.writer.flush(5)
            status, body = await put_route(gw.admin_url(), "CP-C3", {"primary": "b"})
            assert status == 409 and body["result"] == "boot_refused" and "Rejected" in body["detail"]
            assert (await call(ws, "h1", "Heartbeat", {}))[:2] == [3, "h1"]
            assert a.actions("CP-C3")[-1] == "Heartbeat"


async def test_batch_cutover_respects_the_rate_and_dry_run_lists_who_would_move() -> None:
    async with stub_csms(answers) as a, stub_csms(answers) as b:
        cfg = make_config({"a": a.url, "b": b.url})
        async with running_gateway(cfg) as gw:
            async with aiohttp.ClientSession() as http:
                wss = [
                    await http.ws_connect(f"{gw.charger_url()}/{cid}", protocols=("ocpp1.6",))
                    for cid in ("EU-1", "EU-2", "EU-3", "US-1")
                ]
                for i, ws in enumerate(wss):
                    await call(ws, f"b{i}", "BootNotification", BOOT)
                await gw.hub.writer.flush(5)
                req = {"match": "EU-*", "primary": "b", "rate_per_s": 2, "dry_run": True}
                async with http.post(gw.admin_url() + "/api/cutover", json=req) as r:
                    assert (await r.json())["would_move"] == ["EU-1", "EU-2", "EU-3"]
                assert b.connects == []  # a dry run moves nobody
                req["dry_run"] = False
                t0 = time.monotonic()
                async with http.post(gw.admin_url() + "/api/cutover", json=req) as r:
                    body = await r.json()
                elapsed = time.monotonic() - t0
                assert [x["result"] for x in body["results"]] == ["moved"] * 3
                assert elapsed >= 0.9  # 3 chargers at 2 per second: the third starts 1 s after the first
                assert sorted(b.connects) == ["EU-1", "EU-2", "EU-3"]
                for ws in wss:
                    await ws.close()


async def test_reload_applies_mirrors_without_dropping_and_keeps_the_old_config_when_invalid(
    tmp_path: Path,
) -> None:
    async with stub_csms(answers) as a, stub_csms(answers) as m:
        raw = {
            "listen": {"host": "127.0.0.1", "port": 0, "ping_interval_s": 0},
            "admin": {"host": "127.0.0.1", "port": 0},
            "backends": {"a": {"url": a.url}, "m": {"url": m.url}},
            "routes": [{"match": "*", "primary": "a"}],
        }
        path = tmp_path / "gw.yaml"
        path.write_text(yaml.safe_dump(raw))
        from gateway.config import load_config

        async with running_gateway(load_config(str(path))) as gw, raw_charger(gw.charger_url(), "CP-R1") as ws:
            gw.hub.config_path = str(path)
            await call(ws, "b1", "BootNotification", BOOT)
            path.write_text("routes: [{match: '*', primary: zzz}]\nbackends: {a: {url: 'ws://x/ocpp'}}\n")
            async with aiohttp.ClientSession() as http:
                async with http.post(gw.admin_url() + "/api/reload") as r:
                    assert r.status == 400
                    assert any(p["path"] == "routes[0].primary" for p in (await r.json())["problems"])
                assert (await call(ws, "h1", "Heartbeat", {}))[:2] == [3, "h1"]  # still running the old config
                raw["routes"] = [{"match": "*", "primary": "a", "mirrors": ["m"]}]
                path.write_text(yaml.safe_dump(raw))
                async with http.post(gw.admin_url() + "/api/reload") as r:
                    body = await r.json()
                    assert r.status == 200 and body["mirrors_changed"] == ["CP-R1"] and body["reconnecting"] == []
            assert (await call(ws, "h2", "Heartbeat", {}))[:2] == [3, "h2"]  # not dropped
            await m.wait_for(lambda: "Heartbeat" in m.actions("CP-R1"))
            assert m.actions("CP-R1")[0] == "BootNotification"  # boot replayed from the store first


async def test_a_tap_copies_selected_messages_through_the_gateway_to_a_redis_stream(redis_url: str) -> None:
    import redis.asyncio as aioredis

    async with stub_csms(answers) as a:
        cfg = make_config(
            {"a": a.url},
            store=redis_url,
            taps=[{"name": "billing", "actions": ["Authorize"], "redis_stream": {"key": "billing-events"}}],
        )
        async with running_gateway(cfg) as gw, raw_charger(gw.charger_url(), "CP-T1") as ws:
            await call(ws, "b1", "BootNotification", BOOT)
            await call(ws, "a1", "Authorize", {"idTag": "TAG9"})
            r = aioredis.from_url(redis_url)
            try:
                async with asyncio.timeout(5):
                    while await r.xlen("billing-events") < 2:
                        await asyncio.sleep(0.02)
                rows = await r.xrange("billing-events")
            finally:
                await r.aclose()
            events = [json.loads(fields[b"event"]) for _, fields in rows]
            assert [(e["direction"], e["message_type"], e["action"]) for e in events] == [
                ("from_charger", "call", "Authorize"),
                ("from_backend", "callresult", "Authorize"),
            ]
            assert events[0]["charger_id"] == "CP-T1" and events[0]["payload"] == {"idTag": "TAG9"}


async def test_sighup_reloads_the_config_of_a_running_gateway_process(tmp_path: Path) -> None:
    """``ocpp-gateway run`` re-reads its file on SIGHUP: a valid change is applied, an invalid one rejected."""
    import signal
    import sys

    admin = free_port()
    raw = {
        "listen": {"host": "127.0.0.1", "port": free_port(), "ping_interval_s": 0},
        "admin": {"host": "127.0.0.1", "port": admin},
        "backends": {"a": {"url": "ws://127.0.0.1:9/ocpp"}},
        "routes": [{"match": "*", "primary": "a"}],
    }
    path = tmp_path / "gw.yaml"
    path.write_text(yaml.safe_dump(raw))
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "gateway", "run", "--config", str(path),
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
    )  # fmt: skip
    url = f"http://127.0.0.1:{admin}"
    try:
        async with asyncio.timeout(20):
            while True:
                try:
                    await get_metrics(url)
                    break
                except aiohttp.ClientError:
                    await asyncio.sleep(0.05)
            path.write_text("backends: {a: {url: 'nope'}}\nroutes: [{match: '*', primary: a}]\n")
            proc.send_signal(signal.SIGHUP)
            await wait_metric(url, "ocppgw_config_reloads_total", 1, timeout=10, result="invalid")
            raw["backends"]["b"] = {"url": "ws://127.0.0.1:9/ocpp"}
            path.write_text(yaml.safe_dump(raw))
            proc.send_signal(signal.SIGHUP)
            await wait_metric(url, "ocppgw_config_reloads_total", 1, timeout=10, result="applied")
            assert proc.returncode is None  # still serving
            proc.send_signal(signal.SIGTERM)
            assert await proc.wait() == 0
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
