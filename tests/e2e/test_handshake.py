"""The charger's HTTP upgrade over raw TCP: requests a fuzzer or a broken client sends, refused before admission
(no upstream link is opened) with the status RFC 6455 names, counted by outcome, and the socket closed after the
answer."""

from __future__ import annotations

import asyncio
import base64
import os

import pytest

from tests.e2e.test_gateway import get_metrics, metric
from tests.helpers import StubCsms, gateway, make_config, stub_csms

KEY = base64.b64encode(os.urandom(16)).decode()
GOOD = {
    "Host": "127.0.0.1",
    "Upgrade": "websocket",
    "Connection": "Upgrade",
    "Sec-WebSocket-Key": KEY,
    "Sec-WebSocket-Version": "13",
    "Sec-WebSocket-Protocol": "ocpp1.6",
}


def request(
    *, drop: tuple[str, ...] = (), set_: dict[str, str] | None = None, extra: list[str] | None = None,
    cid: str = "CP-H", version: str = "HTTP/1.1",
) -> bytes:  # fmt: skip
    """An upgrade request for ``/ocpp/<cid>``: the good headers without ``drop``, with ``set_`` replacing values
    and ``extra`` header lines appended."""
    headers = {k: v for k, v in GOOD.items() if k not in drop} | (set_ or {})
    lines = [f"GET /ocpp/{cid} {version}", *(f"{k}: {v}" for k, v in headers.items()), *(extra or [])]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


class Answer:
    """The gateway's HTTP answer: status, headers (lower-case names), and whether it closed the socket after it."""

    def __init__(self, raw: bytes, closed: bool) -> None:
        head = raw.split(b"\r\n\r\n", 1)[0].decode("latin-1").split("\r\n")
        self.status = int(head[0].split(" ")[1]) if head[0] else 0
        self.headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in head[1:])}
        self.closed = closed


async def exchange(port: int, data: bytes, pieces: int = 1) -> Answer:
    """Send ``data`` (in ``pieces`` writes, a little apart) and read the answer until the gateway closes."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        step = -(-len(data) // pieces)
        for i in range(0, len(data), step):
            writer.write(data[i : i + step])
            await writer.drain()
            if pieces > 1:
                await asyncio.sleep(0.02)
        raw = bytearray()
        closed = False
        async with asyncio.timeout(5):
            while True:
                chunk = await reader.read(65536)
                if not chunk:
                    closed = True
                    break
                raw += chunk
                if raw.startswith(b"HTTP/1.1 101"):
                    break  # upgraded: the socket stays open
        return Answer(bytes(raw), closed)
    finally:
        writer.close()


async def assert_refused(csms: StubCsms, gw_admin: str, answer: Answer, status: int, outcome: str) -> None:
    assert answer.status == status
    assert answer.closed, "the socket is closed after the answer"
    assert csms.connects == [], "refused before admission: no upstream link"
    assert metric(await get_metrics(gw_admin), "ocppgw_connections_total", outcome=outcome) == 1


async def test_a_good_request_is_upgraded() -> None:
    async with stub_csms() as csms, gateway(make_config({"a": csms.url})) as gw:
        answer = await exchange(gw.port, request())
        assert answer.status == 101 and not answer.closed
        assert answer.headers["sec-websocket-protocol"] == "ocpp1.6"


@pytest.mark.parametrize(
    "req",
    [
        request(set_={"Sec-WebSocket-Version": "8"}),
        request(set_={"Sec-WebSocket-Version": "7"}),
        request(drop=("Sec-WebSocket-Version",)),
        request(extra=["Sec-WebSocket-Version: 13"]),  # duplicated: "13, 13"
    ],
    ids=["8", "7", "missing", "duplicated"],
)
async def test_a_websocket_version_other_than_13_gets_426_naming_13(req: bytes) -> None:
    async with stub_csms() as csms, gateway(make_config({"a": csms.url})) as gw:
        answer = await exchange(gw.port, req)
        await assert_refused(csms, gw.admin_url(), answer, 426, "bad_websocket_version")
        assert answer.headers["sec-websocket-version"] == "13"
        assert gw.hub.conns == {}


@pytest.mark.parametrize(
    "req",
    [
        request(drop=("Sec-WebSocket-Key",)),
        request(extra=[f"Sec-WebSocket-Key: {KEY}"]),  # duplicated: joined with ", "
        request(set_={"Sec-WebSocket-Key": "abcd"}),
        request(set_={"Sec-WebSocket-Key": base64.b64encode(os.urandom(15)).decode()}),
        request(set_={"Sec-WebSocket-Key": "!" * 24}),
    ],
    ids=["missing", "duplicated", "short", "15-bytes", "not-base64"],
)
async def test_a_missing_duplicated_or_malformed_key_gets_400(req: bytes) -> None:
    async with stub_csms() as csms, gateway(make_config({"a": csms.url})) as gw:
        await assert_refused(csms, gw.admin_url(), await exchange(gw.port, req), 400, "bad_websocket_key")
        assert gw.hub.conns == {}


@pytest.mark.parametrize(
    "req",
    [
        request(drop=("Upgrade",)),
        request(set_={"Upgrade": "h2c"}),
        request(drop=("Connection",)),
        request(set_={"Connection": "keep-alive"}),
    ],
    ids=["no-upgrade", "upgrade-h2c", "no-connection", "connection-keep-alive"],
)
async def test_a_request_that_is_no_websocket_upgrade_gets_400(req: bytes) -> None:
    async with stub_csms() as csms, gateway(make_config({"a": csms.url})) as gw:
        await assert_refused(csms, gw.admin_url(), await exchange(gw.port, req), 400, "not_websocket")
        assert gw.hub.conns == {}


async def test_http_1_0_gets_400_before_admission() -> None:
    async with stub_csms() as csms, gateway(make_config({"a": csms.url})) as gw:
        answer = await exchange(gw.port, request(version="HTTP/1.0"))
        await assert_refused(csms, gw.admin_url(), answer, 400, "bad_request")


@pytest.mark.parametrize(
    ("req", "pieces"),
    [
        (request(extra=["X-Big: " + "a" * 65536]), 1),
        (request(extra=["X-Big: " + "a" * 65536]), 8),  # arriving in pieces, still without its end
        (request(extra=[f"X-H{i}: v" for i in range(10_000)]), 1),
        (request(extra=[f"X{i}: v" for i in range(200)]), 1),  # under the size limit, over the header count
    ],
    ids=["64KiB-header", "64KiB-header-in-pieces", "10000-headers", "200-headers"],
)
async def test_a_request_head_over_the_limits_gets_431_and_the_socket_is_closed(req: bytes, pieces: int) -> None:
    async with stub_csms() as csms, gateway(make_config({"a": csms.url})) as gw:
        answer = await exchange(gw.port, req, pieces)
        await assert_refused(csms, gw.admin_url(), answer, 431, "head_too_large")
        assert gw.hub.conns == {}


async def test_a_request_picows_refuses_after_admission_leaves_no_session_behind() -> None:
    # picows checks more than the gateway does before admission (here: a request body); its refusal after the
    # upgrade was admitted must end the session and close the upstream link it opened
    async with stub_csms() as csms, gateway(make_config({"a": csms.url})) as gw:
        answer = await exchange(gw.port, request(extra=["Transfer-Encoding: chunked"]))
        assert answer.status == 400 and answer.closed
        async with asyncio.timeout(5):
            while gw.hub.conns or csms.sockets:
                await asyncio.sleep(0.02)
