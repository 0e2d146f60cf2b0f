"""The gateway over real loopback sockets: handshake, framing, both directions, faults, admin API, drain."""

from __future__ import annotations

import asyncio
import gc
import json
from typing import Any

import aiohttp
import pytest

from tests.conftest import RedisServer
from tests.helpers import StubCsms, gateway, make_config, raw_charger, recv_json, stub_csms


def metric(text: str, name: str, **labels: str) -> float:
    """The value of one sample in Prometheus text output (0 when absent)."""
    for line in text.splitlines():
        if line.startswith((name + "{", name + " ")) and all(f'{k}="{v}"' in line for k, v in labels.items()):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


async def get_metrics(admin_url: str) -> str:
    async with aiohttp.ClientSession() as http, http.get(admin_url + "/metrics") as r:
        return await r.text()


async def wait_metric(admin_url: str, name: str, value: float, timeout: float = 5.0, **labels: str) -> None:
    """Poll /metrics until the sample reaches ``value`` (state changes land after the socket event a test sees)."""
    async with asyncio.timeout(timeout):
        while metric(await get_metrics(admin_url), name, **labels) < value:
            await asyncio.sleep(0.05)


async def handshake_status(url: str, protocols: tuple[str, ...] = ("ocpp1.6",)) -> int:
    async with aiohttp.ClientSession() as http:
        try:
            async with http.ws_connect(url, protocols=protocols):
                return 101
        except aiohttp.WSServerHandshakeError as e:
            return e.status


def boot16() -> dict[str, Any]:
    return {"chargePointVendor": "V", "chargePointModel": "M"}


@pytest.mark.parametrize("protocol", ["ocpp1.6", "ocpp2.0.1"])
async def test_call_and_answer_pass_through_unchanged(protocol: str) -> None:
    async with stub_csms(lambda cid, action, p: {"currentTime": "2026-01-01T00:00:00Z"}) as csms:
        version = protocol.removeprefix("ocpp")
        async with gateway(make_config({"a": {"url": csms.url, "ocpp": version}})) as gw:
            async with raw_charger(gw.charger_url(), "CP-1", protocol) as ws:
                assert ws.protocol == protocol
                sent = '[2,  "id-1", "Heartbeat", {}]'
                await ws.send_str(sent)
                assert await recv_json(ws) == [3, "id-1", {"currentTime": "2026-01-01T00:00:00Z"}]
            assert csms.received == [("CP-1", [2, "id-1", "Heartbeat", {}])]
            assert csms.connects == ["CP-1"]


async def test_csms_call_reaches_the_charger_and_its_answer_goes_back() -> None:
    async with stub_csms() as csms, gateway(make_config({"a": csms.url})) as gw:
        async with raw_charger(gw.charger_url(), "CP-2") as ws:
            await ws.send_str(json.dumps([2, "b1", "BootNotification", boot16()]))
            await recv_json(ws)
            await csms.sockets["CP-2"].send_str('[2,"c1","GetConfiguration",{"key":["HeartbeatInterval"]}]')
            assert await recv_json(ws) == [2, "c1", "GetConfiguration", {"key": ["HeartbeatInterval"]}]
            await ws.send_str('[3,"c1",{"configurationKey":[]}]')
            await csms.wait_for(lambda: any(f[0] == 3 for _, f in csms.received))
            assert ("CP-2", [3, "c1", {"configurationKey": []}]) in csms.received


@pytest.mark.parametrize(
    ("path", "status"),
    [
        ("/other/CP1", 404),
        ("/ocpp/", 404),
        ("/ocpp/a/b", 404),
        ("/ocpp/a%2Fb", 400),
        ("/ocpp/" + "x" * 49, 400),
        ("/ocpp/a%0Ab", 400),
    ],
)
async def test_bad_paths_are_refused_before_the_upgrade(path: str, status: int) -> None:
    async with stub_csms() as csms, gateway(make_config({"a": csms.url})) as gw:
        assert await handshake_status(f"ws://127.0.0.1:{gw.port}{path}") == status
        assert csms.connects == []


async def test_percent_encoded_charger_id_is_decoded_and_forwarded() -> None:
    async with stub_csms() as csms, gateway(make_config({"a": csms.url})) as gw:
        async with raw_charger(gw.charger_url(), "CP%20%C3%A9"):
            pass
        assert csms.connects == ["CP é"]


async def test_no_common_subprotocol_and_no_route_are_refused() -> None:
    async with stub_csms() as csms:
        cfg = make_config({"a": {"url": csms.url, "ocpp": "1.6"}}, routes=[{"match": "CP-*", "primary": "a"}])
        async with gateway(cfg) as gw:
            # a version the gateway neither speaks nor translates: refused before the upgrade (2.0.1 chargers are
            # translated for a 1.6 backend: tests/e2e/test_translation_b_e2e.py)
            assert await handshake_status(gw.charger_url() + "/CP-1", ("ocpp2.1",)) == 400
            assert await handshake_status(gw.charger_url() + "/CP-1", ()) == 400
            assert await handshake_status(gw.charger_url() + "/XX-1", ("ocpp1.6",)) == 404
            assert await handshake_status(gw.charger_url() + "/CP-1", ("ocpp2.0.1", "ocpp1.6")) == 101
            m = await get_metrics(gw.admin_url())
            assert metric(m, "ocppgw_connections_total", outcome="no_subprotocol") == 2
            assert metric(m, "ocppgw_connections_total", outcome="no_route") == 1
        assert csms.connects == ["CP-1"]


async def test_unreachable_primary_refuses_the_upgrade_with_502() -> None:
    cfg = make_config({"a": {"url": "ws://127.0.0.1:1/ocpp", "connect_timeout_s": 2}})
    async with gateway(cfg) as gw:
        assert await handshake_status(gw.charger_url() + "/CP-1") == 502
        m = await get_metrics(gw.admin_url())
        assert metric(m, "ocppgw_connections_total", outcome="backend_unavailable") == 1
        assert metric(m, "ocppgw_backend_connects_total", backend="a", outcome="error") == 1
        assert gw.hub.conns == {}


MALFORMED_16 = [
    ('[2,"m1","Heartbeat",{', "m1", "FormationViolation"),
    ('[2,"m2","Heartbeat"]', "m2", "ProtocolError"),
    ('[2,"m3","Heartbeat",[]]', "m3", "FormationViolation"),
    ('[9,"m4","Heartbeat",{}]', "m4", "ProtocolError"),
    ('[2,"m5",7,{}]', "m5", "ProtocolError"),
]
MALFORMED_201 = [
    ('[2,"m1","Heartbeat",{', "m1", "RpcFrameworkError"),
    ('[2,"m2","Heartbeat"]', "m2", "RpcFrameworkError"),
    ('[2,"m3","Heartbeat",[]]', "m3", "FormatViolation"),
    ('[9,"m4","Heartbeat",{}]', "m4", "MessageTypeNotSupported"),
]


@pytest.mark.parametrize(("protocol", "cases"), [("ocpp1.6", MALFORMED_16), ("ocpp2.0.1", MALFORMED_201)])
async def test_malformed_frames_get_the_versions_callerror_and_the_session_lives_on(
    protocol: str, cases: list[tuple[str, str, str]]
) -> None:
    async with stub_csms(lambda c, a, p: {"currentTime": "t"}) as csms:
        cfg = make_config({"a": {"url": csms.url, "ocpp": protocol.removeprefix("ocpp")}})
        async with gateway(cfg) as gw, raw_charger(gw.charger_url(), "CP-M", protocol) as ws:
            for text, uid, code in cases:
                await ws.send_str(text)
                answer = await recv_json(ws)
                assert answer[:3] == [4, uid, code], text
            # unreadable ids cannot be answered, but are counted
            await ws.send_str('[2, 42, "Heartbeat", {}]')
            await ws.send_str("[]")
            await ws.send_str('[2,"ok","Heartbeat",{}]')
            assert await recv_json(ws) == [3, "ok", {"currentTime": "t"}]
            assert csms.received == [("CP-M", [2, "ok", "Heartbeat", {}])]
            m = await get_metrics(gw.admin_url())
            assert metric(m, "ocppgw_frame_errors_total", side="charger", kind="bad_unique_id") == 1
            assert metric(m, "ocppgw_frame_errors_total", side="charger", kind="invalid_json") == 1


async def test_binary_frame_closes_with_1003_and_oversized_with_1009() -> None:
    async with stub_csms() as csms, gateway(make_config({"a": csms.url}, listen={"max_frame_bytes": 1024})) as gw:
        async with raw_charger(gw.charger_url(), "CP-B") as ws:
            await ws.send_bytes(b"\x00\x01")
            msg = await ws.receive(timeout=5)
            assert msg.type is aiohttp.WSMsgType.CLOSE and msg.data == 1003
        async with raw_charger(gw.charger_url(), "CP-B") as ws:
            await ws.send_str(json.dumps([2, "big", "DataTransfer", {"vendorId": "x", "data": "y" * 2000}]))
            msg = await ws.receive(timeout=5)
            assert msg.type is aiohttp.WSMsgType.CLOSE and msg.data == 1009
        assert csms.actions() == []
        m = await get_metrics(gw.admin_url())
        assert metric(m, "ocppgw_frame_errors_total", side="charger", kind="binary") == 1
        assert metric(m, "ocppgw_frame_errors_total", side="charger", kind="too_big") == 1


async def test_malformed_backend_call_is_answered_to_the_backend_not_forwarded() -> None:
    async with stub_csms() as csms, gateway(make_config({"a": csms.url})) as gw:
        async with raw_charger(gw.charger_url(), "CP-X") as ws:
            await ws.send_str('[2,"h","Heartbeat",{}]')
            await recv_json(ws)
            await csms.sockets["CP-X"].send_str('[2,"bad","Reset",[]]')
            await csms.wait_for(lambda: any(f[0] == 4 for _, f in csms.received))
            assert ("CP-X", [4, "bad", "FormationViolation", "payload must be a JSON object", {}]) in csms.received
            await csms.sockets["CP-X"].send_str('[2,"good","Reset",{"type":"Soft"}]')
            assert await recv_json(ws) == [2, "good", "Reset", {"type": "Soft"}]


async def test_unknown_and_late_results_are_dropped_and_counted() -> None:
    # The CSMS never answers Authorize in time; its late answer must not reach the charger.
    answer = lambda c, a, p: None if a == "Authorize" else {"currentTime": "t"}
    async with stub_csms(answer) as csms:
        cfg = make_config({"a": csms.url}, session={"call_timeout_s": 0.5})
        async with gateway(cfg) as gw, raw_charger(gw.charger_url(), "CP-L") as ws:
            await csms.wait_for(lambda: "CP-L" in csms.sockets)
            await csms.sockets["CP-L"].send_str('[3,"never-asked",{}]')
            await ws.send_str('[2,"a1","Authorize",{"idTag":"T"}]')
            await csms.wait_for(lambda: "Authorize" in csms.actions())
            await wait_metric(gw.admin_url(), "ocppgw_call_timeouts_total", 1, direction="up", backend="a")
            await ws.send_str('[2,"h1","Heartbeat",{}]')
            assert await recv_json(ws) == [3, "h1", {"currentTime": "t"}]
            await csms.sockets["CP-L"].send_str('[3,"a1",{"idTagInfo":{"status":"Accepted"}}]')  # too late
            await csms.sockets["CP-L"].send_str('[2,"probe","GetLocalListVersion",{}]')
            assert (await recv_json(ws))[:2] == [2, "probe"]  # the late a1 answer was not delivered before it
            m = await get_metrics(gw.admin_url())
            assert metric(m, "ocppgw_dropped_results_total", direction="from_backend", reason="unknown_id") == 2


async def test_one_outstanding_call_per_direction_the_next_waits() -> None:
    gate = asyncio.Event()

    async def gated(cid: str, action: str, payload: dict[str, Any]) -> dict[str, Any]:
        if action == "StatusNotification":
            await gate.wait()
        return {}

    async with stub_csms(gated) as csms, gateway(make_config({"a": csms.url})) as gw:
        async with raw_charger(gw.charger_url(), "CP-Q") as ws:
            await ws.send_str(
                '[2,"s1","StatusNotification",{"connectorId":1,"errorCode":"NoError","status":"Available"}]'
            )
            await ws.send_str('[2,"s2","Heartbeat",{}]')
            await csms.wait_for(lambda: len(csms.received) == 1)
            await asyncio.sleep(0.2)
            assert csms.actions() == ["StatusNotification"]  # s2 held back while s1 is outstanding
            assert gw.hub.conns["CP-Q"].session.up.queue
            gate.set()
            assert (await recv_json(ws))[1] == "s1"
            assert (await recv_json(ws))[1] == "s2"
            assert csms.actions() == ["StatusNotification", "Heartbeat"]


async def test_second_connection_with_same_id_replaces_the_first() -> None:
    async with stub_csms() as csms, gateway(make_config({"a": csms.url})) as gw:
        async with raw_charger(gw.charger_url(), "CP-D") as old:
            async with raw_charger(gw.charger_url(), "CP-D") as new:
                msg = await old.receive(timeout=5)
                assert msg.type is aiohttp.WSMsgType.CLOSE and msg.data == 1000
                await new.send_str('[2,"n1","Heartbeat",{}]')
                assert (await recv_json(new))[1] == "n1"
                assert len(gw.hub.conns) == 1
                m = await get_metrics(gw.admin_url())
                assert metric(m, "ocppgw_chargers_replaced_total") == 1
        assert csms.connects == ["CP-D", "CP-D"]


async def test_backend_drop_mid_session_reconnects_within_grace() -> None:
    csms = StubCsms(answer=lambda c, a, p: {"currentTime": "t"})
    await csms.start()
    port = csms.port
    try:
        cfg = make_config({"a": {"url": csms.url, "reconnect_grace_s": 10}})
        async with gateway(cfg) as gw, raw_charger(gw.charger_url(), "CP-R") as ws:
            await ws.send_str('[2,"h1","Heartbeat",{}]')
            await recv_json(ws)
            await csms.stop()  # backend goes away
            restarted = StubCsms(answer=lambda c, a, p: {"currentTime": "t2"})
            await restarted.start(port)
            try:
                await ws.send_str('[2,"h2","Heartbeat",{}]')  # waits in the queue until the link is back
                assert await recv_json(ws, timeout=10) == [3, "h2", {"currentTime": "t2"}]
                m = await get_metrics(gw.admin_url())
                assert metric(m, "ocppgw_backend_reconnects_total", backend="a") == 1
                assert metric(m, "ocppgw_backend_link_lost_total", backend="a") == 1
            finally:
                await restarted.stop()
    finally:
        await csms.stop()


async def test_backend_gone_past_grace_closes_the_charger_with_1013() -> None:
    csms = StubCsms()
    await csms.start()
    cfg = make_config({"a": {"url": csms.url, "reconnect_grace_s": 0.5}})
    async with gateway(cfg) as gw, raw_charger(gw.charger_url(), "CP-G") as ws:
        await csms.wait_for(lambda: "CP-G" in csms.sockets)
        await csms.stop()
        msg = await ws.receive(timeout=10)
        assert msg.type is aiohttp.WSMsgType.CLOSE and msg.data == 1013
        await wait_metric(gw.admin_url(), "ocppgw_disconnects_total", 1, reason="backend_lost")


async def test_redis_down_mid_session_charger_keeps_working_and_state_lands_later(
    redis_url: str, redis_server: RedisServer
) -> None:
    async with stub_csms(lambda c, a, p: {}) as csms:
        async with (
            gateway(make_config({"a": csms.url}, store=redis_url)) as gw,
            raw_charger(gw.charger_url(), "CP-S") as ws,
        ):
            redis_server.stop()
            status = {"connectorId": 1, "errorCode": "NoError", "status": "Charging"}
            await ws.send_str(json.dumps([2, "s1", "StatusNotification", status]))
            assert (await recv_json(ws))[:2] == [3, "s1"]
            async with aiohttp.ClientSession() as http, http.get(gw.admin_url() + "/readyz") as r:
                assert r.status == 503
                assert "store unreachable" in (await r.json())["problems"]
            await ws.send_str('[2,"h1","Heartbeat",{}]')
            assert (await recv_json(ws))[:2] == [3, "h1"]
            redis_server.start()
            assert await gw.hub.writer.flush(15)
            assert await gw.hub.store.get_statuses("CP-S") == {"1": status}
            async with aiohttp.ClientSession() as http, http.get(gw.admin_url() + "/readyz") as r:
                assert r.status == 200
            m = await get_metrics(gw.admin_url())
            assert metric(m, "ocppgw_store_errors_total", op="write") >= 1


async def test_admin_api_lists_chargers_and_sends_a_call(redis_url: str) -> None:
    async with stub_csms(lambda c, a, p: {"status": "Accepted", "currentTime": "t", "interval": 300}) as csms:
        cfg = make_config({"a": csms.url}, store=redis_url, admin={"token": "tok"})
        async with gateway(cfg) as gw, raw_charger(gw.charger_url(), "CP-A") as ws:
            await ws.send_str(json.dumps([2, "b1", "BootNotification", boot16()]))
            await recv_json(ws)
            auth = {"Authorization": "Bearer tok"}
            async with aiohttp.ClientSession() as http:
                async with http.get(gw.admin_url() + "/api/chargers") as r:
                    assert r.status == 401
                async with http.get(gw.admin_url() + "/api/chargers", headers={"Authorization": "Bearer nope"}) as r:
                    assert r.status == 401
                await gw.hub.writer.flush(5)
                async with http.get(gw.admin_url() + "/api/chargers", headers=auth) as r:
                    body = await r.json()
                    assert [c["charger_id"] for c in body["chargers"]] == ["CP-A"]
                    assert body["chargers"][0]["local"] is True
                    assert body["chargers"][0]["connection"]["protocol"] == "ocpp1.6"
                async with http.get(gw.admin_url() + "/api/chargers/CP-A", headers=auth) as r:
                    body = await r.json()
                    assert body["boot"]["request"] == boot16()
                    assert body["boot"]["response"]["status"] == "Accepted"

                async def answer_call() -> None:
                    frame = await recv_json(ws)
                    assert frame[2:] == ["ChangeAvailability", {"connectorId": 0, "type": "Inoperative"}]
                    await ws.send_str(json.dumps([3, frame[1], {"status": "Scheduled"}]))

                task = asyncio.create_task(answer_call())
                req = {"action": "ChangeAvailability", "payload": {"connectorId": 0, "type": "Inoperative"}}
                async with http.post(gw.admin_url() + "/api/chargers/CP-A/call", json=req, headers=auth) as r:
                    assert r.status == 200
                    assert await r.json() == {"result": {"status": "Scheduled"}}
                await task
                async with http.post(gw.admin_url() + "/api/chargers/NOPE/call", json=req, headers=auth) as r:
                    assert r.status == 404
                    assert (await r.json())["error"]["code"] == "NotConnected"
                req["timeout_s"] = 0.3
                async with http.post(gw.admin_url() + "/api/chargers/CP-A/call", json=req, headers=auth) as r:
                    assert r.status == 504  # the charger does not answer this time
                    error = (await r.json())["error"]
                    assert error == {"code": "Timeout", "description": error["description"], "details": {}}
            assert csms.actions() == ["BootNotification"]  # the admin CALL never went to the CSMS


async def test_an_admin_call_that_timed_out_leaves_nothing_unretrieved_when_the_charger_goes() -> None:
    """The charger disconnects after the API answered 504: its ConnectionError reaches no abandoned future (asyncio
    would print "Future exception was never retrieved" outside the JSON log)."""
    loop = asyncio.get_running_loop()
    problems: list[dict[str, Any]] = []
    previous = loop.get_exception_handler()
    loop.set_exception_handler(lambda _loop, context: problems.append(context))
    try:
        async with stub_csms(lambda c, a, p: {"currentTime": "t"}) as csms, gateway(make_config({"a": csms.url})) as gw:
            async with raw_charger(gw.charger_url(), "CP-T") as ws, aiohttp.ClientSession() as http:
                req = {"action": "ClearCache", "payload": {}, "timeout_s": 0.2}
                async with http.post(gw.admin_url() + "/api/chargers/CP-T/call", json=req) as r:
                    assert r.status == 504
                assert (await recv_json(ws))[2] == "ClearCache"  # it reached the charger, which never answers
            async with asyncio.timeout(5):
                while "CP-T" in gw.hub.conns:
                    await asyncio.sleep(0.01)
        gc.collect()
        await asyncio.sleep(0)
    finally:
        loop.set_exception_handler(previous)
    assert problems == []


async def test_metrics_and_health_endpoints() -> None:
    async with stub_csms(lambda c, a, p: {"currentTime": "t"}) as csms, gateway(make_config({"a": csms.url})) as gw:
        async with raw_charger(gw.charger_url(), "CP-H") as ws:
            await ws.send_str('[2,"h1","Heartbeat",{}]')
            await recv_json(ws)
            m = await get_metrics(gw.admin_url())
            assert metric(m, "ocppgw_chargers_connected", ocpp_version="1.6") == 1
            assert (
                metric(
                    m,
                    "ocppgw_messages_total",
                    direction="from_charger",
                    message_type="call",
                    action="Heartbeat",
                    backend="a",
                )
                == 1
            )
            assert metric(m, "ocppgw_call_duration_seconds_count", direction="up", action="Heartbeat", backend="a") == 1
            assert "CP-H" not in m  # no charger id label
            async with aiohttp.ClientSession() as http:
                async with http.get(gw.admin_url() + "/healthz") as r:
                    assert r.status == 200
                async with http.get(gw.admin_url() + "/readyz") as r:
                    assert r.status == 200


async def test_shutdown_lets_inflight_call_finish_then_closes_chargers_with_1001() -> None:
    gate = asyncio.Event()

    async def gated(cid: str, action: str, payload: dict[str, Any]) -> dict[str, Any]:
        await gate.wait()
        return {"currentTime": "t"}

    async with stub_csms(gated) as csms:
        cfg = make_config({"a": csms.url}, session={"shutdown_grace_s": 5})
        async with raw_charger_after_gateway(cfg) as (gw_cm, ws):
            await ws.send_str('[2,"h1","Heartbeat",{}]')
            await csms.wait_for(lambda: csms.actions() == ["Heartbeat"])
            closing = asyncio.create_task(gw_cm.__aexit__(None, None, None))
            await asyncio.sleep(0.2)
            assert not closing.done()  # waits for the in-flight CALL
            gate.set()
            assert await recv_json(ws) == [3, "h1", {"currentTime": "t"}]
            msg = await ws.receive(timeout=5)
            assert msg.type is aiohttp.WSMsgType.CLOSE and msg.data == 1001
            await closing


class raw_charger_after_gateway:
    """Start a gateway and connect a charger, letting the test drive the gateway's shutdown itself."""

    def __init__(self, cfg: Any) -> None:
        self.cfg = cfg

    async def __aenter__(self) -> tuple[Any, aiohttp.ClientWebSocketResponse]:
        self.gw_cm = gateway(self.cfg)
        gw = await self.gw_cm.__aenter__()
        self.http = aiohttp.ClientSession()
        self.ws = await self.http.ws_connect(gw.charger_url() + "/CP-Z", protocols=("ocpp1.6",))
        return self.gw_cm, self.ws

    async def __aexit__(self, *exc: object) -> None:
        await self.ws.close()
        await self.http.close()


async def test_silent_charger_is_pinged_and_closed_when_it_does_not_pong() -> None:
    async with stub_csms() as csms, gateway(make_config({"a": csms.url}, listen={"ping_interval_s": 1})) as gw:
        async with aiohttp.ClientSession() as http:
            url = gw.charger_url() + "/CP-P"
            async with (
                http.ws_connect(url, protocols=("ocpp1.6",), autoping=False) as mute,
                http.ws_connect(gw.charger_url() + "/CP-OK", protocols=("ocpp1.6",), autoping=True) as healthy,
            ):
                # aiohttp answers pings inside receive(): keep reading on the healthy one
                reader = asyncio.create_task(healthy.receive())
                msg = await mute.receive(timeout=5)
                assert msg.type is aiohttp.WSMsgType.PING  # the gateway pings a silent charger
                msg = await mute.receive(timeout=5)
                assert msg.type is aiohttp.WSMsgType.CLOSE and msg.data == 1001  # and closes it without a pong
                await wait_metric(gw.admin_url(), "ocppgw_disconnects_total", 1, reason="ping_timeout")
                assert "CP-OK" in gw.hub.conns and not healthy.closed  # a charger that pongs stays
                assert not reader.done()
                reader.cancel()


async def test_backend_that_stops_answering_pings_is_dropped_and_reconnected() -> None:
    async with stub_csms() as csms:
        cfg = make_config({"a": {"url": csms.url, "ping_interval_s": 1, "reconnect_grace_s": 10}})
        async with gateway(cfg) as gw, raw_charger(gw.charger_url(), "CP-K"):
            await csms.wait_for(lambda: "CP-K" in csms.sockets)
            # aiohttp's server answers pings itself; the gateway sees pongs and keeps the link
            await asyncio.sleep(2.5)
            m = await get_metrics(gw.admin_url())
            assert metric(m, "ocppgw_backend_link_lost_total", backend="a") == 0
            assert csms.connects == ["CP-K"]


@pytest.mark.parametrize(
    ("protocol", "bad", "code"),
    [
        ("ocpp1.6", {"chargePointVendor": "V"}, "OccurenceConstraintViolation"),
        ("ocpp1.6", {"chargePointVendor": "V", "chargePointModel": 7}, "TypeConstraintViolation"),
        (
            "ocpp2.0.1",
            {"reason": "PowerUp", "chargingStation": {"model": "M", "vendorName": "V"}, "extra": 1},
            "OccurrenceConstraintViolation",
        ),
        (
            "ocpp2.0.1",
            {"reason": "Bogus", "chargingStation": {"model": "M", "vendorName": "V"}},
            "PropertyConstraintViolation",
        ),
    ],
)
async def test_schema_validation_when_enabled_refuses_invalid_calls(
    protocol: str, bad: dict[str, Any], code: str
) -> None:
    version = protocol.removeprefix("ocpp")
    good = boot16() if version == "1.6" else {"reason": "PowerUp", "chargingStation": {"model": "M", "vendorName": "V"}}
    answer = {"status": "Accepted", "currentTime": "2026-01-01T00:00:00Z", "interval": 300}
    async with stub_csms(lambda c, a, p: answer) as csms:
        cfg = make_config({"a": {"url": csms.url, "ocpp": version}}, session={"validate_schemas": True})
        async with gateway(cfg) as gw, raw_charger(gw.charger_url(), "CP-V", protocol) as ws:
            await ws.send_str(json.dumps([2, "bad", "BootNotification", bad]))
            err = await recv_json(ws)
            assert err[:3] == [4, "bad", code]
            await ws.send_str(json.dumps([2, "good", "BootNotification", good]))
            assert await recv_json(ws) == [3, "good", answer]
            assert csms.actions() == ["BootNotification"]  # only the valid one reached the CSMS
            m = await get_metrics(gw.admin_url())
            assert metric(m, "ocppgw_frame_errors_total", side="charger", kind="schema") == 1
