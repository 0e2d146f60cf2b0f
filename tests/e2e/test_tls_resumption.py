"""TLS session resumption on the charger listeners (what Python's ssl allows: OpenSSL's session tickets, on by default,
keys per context): a charger that offers the session of its previous connection to the same gateway process resumes
it and is admitted as before; a resumed session keeps its client certificate, so profile 3's CN check still holds;
another gateway process (a restart) cannot resume it. Blocking TLS clients in a thread (asyncio has no per-connection
``session`` argument), trustme certificates."""

from __future__ import annotations

import asyncio
import socket
import ssl
from pathlib import Path

import pytest

from gateway.ops.lifecycle import Running
from tests.e2e.pki import Pki
from tests.e2e.test_security import PW, basic, csms, set_password, tls_listener
from tests.helpers import gateway, make_config


@pytest.fixture
def pki(tmp_path: Path) -> Pki:
    return Pki(tmp_path)


def upgrade(
    port: int, cid: str, ctx: ssl.SSLContext, session: ssl.SSLSession | None, headers: dict[str, str]
) -> tuple[int, ssl.SSLSession | None, bool]:
    """One connection: TLS (offering ``session``), the upgrade request; (HTTP status, the session, resumed)."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
        with ctx.wrap_socket(raw, server_hostname="127.0.0.1", session=session) as tls:
            extra = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
            tls.sendall(
                f"GET /ocpp/{cid} HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                f"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
                f"Sec-WebSocket-Protocol: ocpp1.6\r\n{extra}\r\n".encode()
            )
            head = b""
            while b"\r\n\r\n" not in head:
                chunk = tls.recv(4096)
                if not chunk:
                    break
                head += chunk
            status = int(head.split(b" ", 2)[1]) if head else 0
            return status, tls.session, tls.session_reused


async def connect_twice(gw: Running, cid: str, ctx: ssl.SSLContext, headers: dict[str, str]) -> list[bool]:
    port = gw.ports[gw.hub.config.listen.name]
    s1, session, reused1 = await asyncio.to_thread(upgrade, port, cid, ctx, None, headers)
    s2, _, reused2 = await asyncio.to_thread(upgrade, port, cid, ctx, session, headers)
    assert (s1, s2) == (101, 101)
    return [reused1, reused2]


@pytest.mark.parametrize("tls", ["1.2", "1.3"])
async def test_a_profile2_charger_resumes_its_tls_session_on_the_same_process(pki: Pki, tls: str) -> None:
    ctx = pki.client_context()
    ctx.maximum_version = ssl.TLSVersion.TLSv1_2 if tls == "1.2" else ssl.TLSVersion.TLSv1_3
    async with csms() as c, gateway(make_config({"a": c.url}, listen=[tls_listener(pki, 2)])) as gw:
        await set_password(gw, "CP-1", PW)
        assert await connect_twice(gw, "CP-1", ctx, basic("CP-1", PW)) == [False, True]


async def test_a_resumed_session_keeps_its_certificate_and_the_cn_check(pki: Pki) -> None:
    ctx = pki.client_context(pki.charger("CP-3"))
    async with csms() as c, gateway(make_config({"a": c.url}, listen=[tls_listener(pki, 3)])) as gw:
        assert await connect_twice(gw, "CP-3", ctx, {}) == [False, True]
        port = gw.ports[gw.hub.config.listen.name]
        _, session, _ = await asyncio.to_thread(upgrade, port, "CP-3", ctx, None, {})
        status, _, reused = await asyncio.to_thread(upgrade, port, "CP-OTHER", ctx, session, {})
        assert reused and status == 403  # the resumed session's CN is CP-3's


async def test_another_gateway_process_cannot_resume_the_session(pki: Pki) -> None:
    """Ticket keys are per SSLContext and Python cannot set them: a restart makes every charger do a full
    handshake (README "Reconnect storms")."""
    ctx = pki.client_context(pki.charger("CP-3"))
    async with csms() as c:
        cfg = make_config({"a": c.url}, listen=[tls_listener(pki, 3)])
        async with gateway(cfg) as gw:
            port = gw.ports[gw.hub.config.listen.name]
            _, session, _ = await asyncio.to_thread(upgrade, port, "CP-3", ctx, None, {})
        async with gateway(cfg) as gw:
            port = gw.ports[gw.hub.config.listen.name]
            status, _, reused = await asyncio.to_thread(upgrade, port, "CP-3", ctx, session, {})
            assert status == 101 and not reused
