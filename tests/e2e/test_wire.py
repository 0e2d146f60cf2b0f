"""The WebSocket and OCPP-J wire over loopback, as independent implementations and a fuzzer drive it: close frames
on both sides, unique ids the gateway cannot use, invalid UTF-8, duplicate JSON keys.

The peers here are raw picows ends (a charger client, a CSMS server) where a test needs frames aiohttp will not
send (a close frame without a status code) or must see the exact bytes of the gateway's close frame.
"""

from __future__ import annotations

import asyncio
import json
import struct
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import aiohttp
import picows
import pytest
from picows import WSFrame, WSListener, WSMsgType, WSTransport, WSUpgradeRequest, WSUpgradeResponse
from picows.common import WSUpgradeResponseWithListener

from tests.e2e.test_gateway import get_metrics, metric, wait_metric
from tests.helpers import gateway, make_config, raw_charger, recv_json, stub_csms


class Peer(WSListener):
    """A picows end that records every frame it receives as (type, payload bytes)."""

    def __init__(self) -> None:
        self.transport: WSTransport | None = None
        self.frames: list[tuple[WSMsgType, bytes]] = []
        self.got_close = asyncio.Event()
        self.connected = asyncio.Event()
        self.gone = asyncio.Event()

    def on_ws_connected(self, transport: WSTransport) -> None:
        self.transport = transport
        self.connected.set()

    def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
        self.frames.append((frame.msg_type, frame.get_payload_as_bytes()))
        if frame.msg_type is WSMsgType.CLOSE:
            self.got_close.set()

    def on_ws_disconnected(self, transport: WSTransport) -> None:
        self.gone.set()

    def close_payload(self) -> bytes:
        closes = [p for t, p in self.frames if t is WSMsgType.CLOSE]
        assert len(closes) == 1, self.frames
        return closes[0]


def close_frame(code: int | None) -> bytes:
    """The payload of a close frame: empty (no status code) or the 2-byte code."""
    return b"" if code is None else struct.pack("!H", code)


@asynccontextmanager
async def picows_charger(url: str, protocol: str = "ocpp1.6") -> AsyncIterator[Peer]:
    peer = Peer()
    transport, _ = await picows.ws_connect(
        lambda: peer, url, extra_headers={"Sec-WebSocket-Protocol": protocol}, enable_auto_ping=False
    )
    try:
        yield peer
    finally:
        transport.disconnect()
        await transport.wait_disconnected()


@asynccontextmanager
async def picows_csms(protocol: str = "ocpp1.6") -> AsyncIterator[tuple[str, list[Peer]]]:
    """A CSMS stand-in on picows: each connection's :class:`Peer` is appended to the list it yields with its URL."""
    peers: list[Peer] = []

    def factory(request: WSUpgradeRequest) -> WSUpgradeResponseWithListener:
        peer = Peer()
        peers.append(peer)
        response = WSUpgradeResponse.create_101_response(extra_headers={"Sec-WebSocket-Protocol": protocol})
        return WSUpgradeResponseWithListener(response, peer)

    server = await picows.ws_create_server(factory, "127.0.0.1", 0, enable_auto_ping=False)
    port = server.sockets[0].getsockname()[1]
    try:
        yield f"ws://127.0.0.1:{port}/ocpp", peers
    finally:
        server.close()
        for peer in peers:
            if peer.transport is not None:
                peer.transport.disconnect()
        await server.wait_closed()


async def wait_for(event: asyncio.Event, timeout: float = 5.0) -> None:
    async with asyncio.timeout(timeout):
        await event.wait()


# a close frame received -> the close frame the gateway answers with (RFC 6455 §5.5.1, §7.4: 0, 1005, 1006 and
# 1015 never go on the wire; an invalid code received is a protocol error, 1002)
CLOSE_ANSWERS = [
    (None, None),
    (1000, 1000),
    (1001, 1001),
    (4000, 4000),
    (0, 1002),
    (1006, 1002),
]


@pytest.mark.parametrize(("sent", "answered"), CLOSE_ANSWERS)
async def test_charger_close_is_answered_with_its_code_or_without_one(sent: int | None, answered: int | None) -> None:
    async with stub_csms() as csms, gateway(make_config({"a": csms.url})) as gw:
        async with picows_charger(gw.charger_url() + "/CP-C") as charger:
            await wait_for(charger.connected)
            assert charger.transport is not None
            charger.transport.send(WSMsgType.CLOSE, close_frame(sent))
            await wait_for(charger.got_close)
            assert charger.close_payload() == close_frame(answered)
            await wait_for(charger.gone)


@pytest.mark.parametrize(("sent", "answered"), CLOSE_ANSWERS)
async def test_backend_close_is_answered_with_its_code_or_without_one(sent: int | None, answered: int | None) -> None:
    async with picows_csms() as (url, peers), gateway(make_config({"a": url})) as gw:
        async with raw_charger(gw.charger_url(), "CP-D"):
            first = peers[0]
            await wait_for(first.connected)
            assert first.transport is not None
            first.transport.send(WSMsgType.CLOSE, close_frame(sent))
            await wait_for(first.got_close)
            assert first.close_payload() == close_frame(answered)
            await wait_for(first.gone)


@pytest.mark.parametrize(("protocol", "answer_id", "code"), [("ocpp1.6", "-1", "ProtocolError"),
                                                            ("ocpp2.0.1", "-1", "RpcFrameworkError")])  # fmt: skip
async def test_call_with_a_unique_id_over_36_characters_is_answered_not_forwarded(
    protocol: str, answer_id: str, code: str
) -> None:
    async with stub_csms(lambda c, a, p: {"currentTime": "t"}) as csms:
        cfg = make_config({"a": {"url": csms.url, "ocpp": protocol.removeprefix("ocpp")}})
        async with gateway(cfg) as gw, raw_charger(gw.charger_url(), "CP-U", protocol) as ws:
            await ws.send_str(json.dumps([2, "u" * 37, "Heartbeat", {}]))
            assert (await recv_json(ws))[:3] == [4, answer_id, code]
            await ws.send_str('[2,"ok","Heartbeat",{}]')
            assert await recv_json(ws) == [3, "ok", {"currentTime": "t"}]
            assert csms.received == [("CP-U", [2, "ok", "Heartbeat", {}])]
            m = await get_metrics(gw.admin_url())
            assert metric(m, "ocppgw_frame_errors_total", side="charger", kind="bad_unique_id") == 1


NOT_UTF8 = b'[2,"n1","DataTransfer",{"vendorId":"V","data":"\xff\xfe"}]'


async def test_invalid_utf8_from_the_charger_closes_it_with_1007() -> None:
    async with stub_csms() as csms, gateway(make_config({"a": csms.url})) as gw:
        async with raw_charger(gw.charger_url(), "CP-8") as ws:
            await ws.send_frame(NOT_UTF8, aiohttp.WSMsgType.TEXT)
            msg = await ws.receive(timeout=5)
            assert msg.type is aiohttp.WSMsgType.CLOSE and msg.data == 1007
        assert csms.actions() == []
        await wait_metric(gw.admin_url(), "ocppgw_disconnects_total", 1, reason="invalid_utf8")
        m = await get_metrics(gw.admin_url())
        assert metric(m, "ocppgw_frame_errors_total", side="charger", kind="invalid_utf8") == 1


async def test_invalid_utf8_from_the_backend_fails_its_link_with_1007_and_the_link_comes_back() -> None:
    async with stub_csms(lambda c, a, p: {"currentTime": "t"}) as csms, gateway(make_config({"a": csms.url})) as gw:
        async with raw_charger(gw.charger_url(), "CP-9") as ws:
            await csms.wait_for(lambda: "CP-9" in csms.sockets)
            first = csms.sockets["CP-9"]
            await first.send_frame(NOT_UTF8, aiohttp.WSMsgType.TEXT)
            await wait_metric(gw.admin_url(), "ocppgw_backend_reconnects_total", 1, backend="a")
            assert first.close_code == 1007
            assert csms.connects == ["CP-9", "CP-9"]
            await ws.send_str('[2,"h","Heartbeat",{}]')
            assert await recv_json(ws) == [3, "h", {"currentTime": "t"}]  # nothing of the bad frame reached it
            m = await get_metrics(gw.admin_url())
            assert metric(m, "ocppgw_frame_errors_total", side="backend", kind="invalid_utf8") == 1


async def test_a_status_with_a_key_given_twice_is_refused_and_other_calls_pass_as_they_came() -> None:
    async with stub_csms() as csms, gateway(make_config({"a": csms.url})) as gw:
        async with raw_charger(gw.charger_url(), "CP-K") as ws:
            await ws.send_str('[2,"s1","StatusNotification",{"connectorId":1,"errorCode":"NoError",'
                              '"status":"Available","status":"Faulted"}]')  # fmt: skip
            assert (await recv_json(ws))[:3] == [4, "s1", "FormationViolation"]
            await ws.send_str('[2,"m1","MeterValues",{"connectorId":1,"connectorId":2,"meterValue":[]}]')
            assert await recv_json(ws) == [3, "m1", {}]
        assert csms.actions() == ["MeterValues"]  # forwarded byte for byte: the CSMS resolves it its own way
        m = await get_metrics(gw.admin_url())
        assert metric(m, "ocppgw_frame_errors_total", side="charger", kind="duplicate_keys") == 1
