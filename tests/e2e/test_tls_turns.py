"""TLS handshakes taking turns (gateway/edge/listener.py, ``listen.max_tls_handshakes``): a burst of chargers larger
than the turns is admitted in full, none is refused or dropped; a connection whose handshake never starts in time is
closed and counted as a handshake timeout; the turns shrink while the event loop lags and grow back when it keeps up.
Real sockets, trustme certificates, the gateway's own listener."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import ssl
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from ocpp.v16 import call as call16

from gateway.config import ConfigError
from gateway.edge import listener
from gateway.edge.listener import MIN_TURNS, serve_tls
from gateway.security import HandshakeAbandoned, tls_failure
from tests.e2e.pki import Pki
from tests.e2e.test_gateway import get_metrics, metric
from tests.e2e.test_security import PW, basic, csms, ocpp_charger, set_password, tls_listener
from tests.helpers import gateway, make_config


@pytest.fixture
def pki(tmp_path: Path) -> Pki:
    return Pki(tmp_path)


async def test_a_burst_larger_than_the_turns_is_admitted_in_full(pki: Pki) -> None:
    n = 40
    lst = tls_listener(pki, 2, max_tls_handshakes=2)
    async with csms() as c, gateway(make_config({"a": c.url}, listen=[lst])) as gw:
        for i in range(n):
            await set_password(gw, f"CP-{i}", PW)
        ctx = pki.client_context()

        async def boot(i: int) -> str:
            cid = f"CP-{i}"
            async with ocpp_charger(gw.charger_url(), cid, headers=basic(cid, PW), ssl=ctx) as cp:
                res = await cp.call(call16.BootNotification(charge_point_model="M", charge_point_vendor="V"))
                return str(res.status)

        assert await asyncio.gather(*(boot(i) for i in range(n))) == ["Accepted"] * n
        m = await get_metrics(gw.admin_url())
        assert metric(m, "ocppgw_tls_handshakes_total", listener="p2", outcome="ok") == n
        assert metric(m, "ocppgw_tls_handshakes_waiting", listener="p2") == 0
        assert 1 <= metric(m, "ocppgw_tls_handshake_turns", listener="p2") <= 2


def test_max_tls_handshakes_is_checked_in_the_config(pki: Pki) -> None:
    with pytest.raises(ConfigError, match=r"listen\[0\]\.max_tls_handshakes"):
        make_config({"a": "ws://127.0.0.1:9/ocpp"}, listen=[tls_listener(pki, 2, max_tls_handshakes=-1)])


@contextlib.asynccontextmanager
async def one_turn(
    pki: Pki, handshake_timeout: float, failures: list[BaseException]
) -> AsyncIterator[tuple[listener.GatedTlsServer, int]]:
    """The gateway's TLS listener alone, with one turn; its failures go to ``failures``."""
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_ctx.load_cert_chain(pki.gw_cert, pki.gw_key)
    srv = await serve_tls(
        asyncio.Protocol, "127.0.0.1", 0, ctx=server_ctx, handshake_timeout=handshake_timeout, max_turns=1,
        on_failure=failures.append,
    )  # fmt: skip
    try:
        yield srv, srv.sockets[0].getsockname()[1]
    finally:
        srv.close()
        await srv.wait_closed()


async def test_a_connection_that_waits_past_the_queue_timeout_is_closed_and_counted(
    pki: Pki, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One turn, held by a client that never sends its ClientHello until the loop's handshake timeout; the
    connection queued behind it has waited longer than the queue allows by then: closed without a handshake. Both
    count as timeouts."""
    monkeypatch.setattr(listener, "QUEUE_TIMEOUT_S", 0.3)
    failures: list[BaseException] = []
    async with one_turn(pki, 0.5, failures) as (srv, port):
        silent = socket.create_connection(("127.0.0.1", port))
        await asyncio.sleep(0.05)
        queued = socket.create_connection(("127.0.0.1", port))
        queued.settimeout(5)
        t0 = time.monotonic()
        got = await asyncio.to_thread(queued.recv, 1)  # EOF: closed, never answered
        assert got == b""
        assert time.monotonic() - t0 < 4  # (bounded by the test's own timeout, not a speed claim)
        for _ in range(50):
            if len(failures) == 2:
                break
            await asyncio.sleep(0.05)
        assert [type(e) for e in failures] == [TimeoutError, TimeoutError]
        assert srv.queued == 0
        silent.close()
        queued.close()


async def test_a_client_that_closed_while_it_waited_gets_no_handshake_and_is_counted_abandoned(pki: Pki) -> None:
    """One turn, held by a client that sends nothing; behind it a client that gives up and closes, then one that
    waits. When the turn frees, the closed one is dropped without a handshake (``abandoned``) and the one still
    there is handshaken."""
    failures: list[BaseException] = []
    async with one_turn(pki, 30, failures) as (srv, port):
        silent = socket.create_connection(("127.0.0.1", port))
        await asyncio.sleep(0.05)
        gave_up = socket.create_connection(("127.0.0.1", port))
        await asyncio.sleep(0.05)
        gave_up.close()
        waiting = asyncio.create_task(
            asyncio.open_connection("127.0.0.1", port, ssl=pki.client_context(), server_hostname="localhost")
        )
        for _ in range(100):
            if srv.queued == 2:
                break
            await asyncio.sleep(0.02)
        assert srv.queued == 2 and failures == []
        silent.close()  # its handshake ends (EOF: not counted), the turn is free
        async with asyncio.timeout(10):
            _, writer = await waiting
        writer.close()
        assert [type(e) for e in failures] == [HandshakeAbandoned]
        assert tls_failure(failures[0]) == "abandoned"
        assert srv.queued == 0


async def test_the_turns_shrink_while_the_loop_lags_and_grow_back(pki: Pki, monkeypatch: pytest.MonkeyPatch) -> None:
    """Clients that hold their turn (TCP connected, no ClientHello) keep every turn busy; a callback that blocks the
    loop makes the listener's timer late: the turns halve; once the loop keeps up they grow again."""
    monkeypatch.setattr(listener, "LAG_TARGET_S", 0.015)  # a shared CI machine lags a few ms on its own
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_ctx.load_cert_chain(pki.gw_cert, pki.gw_key)
    srv = await serve_tls(
        asyncio.Protocol, "127.0.0.1", 0, ctx=server_ctx, handshake_timeout=5, max_turns=64, on_failure=lambda e: None
    )
    port = srv.sockets[0].getsockname()[1]
    clients = [socket.create_connection(("127.0.0.1", port)) for _ in range(80)]
    try:
        for _ in range(400):  # the turns grow to the maximum while the loop keeps up and every turn is in use
            if srv.turns == 64:
                break
            await asyncio.sleep(listener.PROBE_S)
        assert srv.turns == 64 and srv.active == 64 and srv.queued == 16
        for _ in range(3):
            time.sleep(0.05)  # the loop blocked: the next probe fires late  # noqa: ASYNC251
            await asyncio.sleep(listener.PROBE_S * 2)
        assert srv.turns <= 32
        low = srv.turns
        assert low >= MIN_TURNS
        for _ in range(400):
            if srv.turns > low:
                break
            await asyncio.sleep(listener.PROBE_S)
        assert srv.turns > low
    finally:
        for s in clients:
            with contextlib.suppress(OSError):
                s.close()
        srv.close()
        await srv.wait_closed()
