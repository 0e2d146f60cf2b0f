"""Mirrors and live cutover toward backends that require OCPP security profiles 2 and 3.

A mirror (``routes[].mirrors``) is a backend like any other: its link must be opened with the backend's TLS context
(``tls.ca``, and for profile 3 the charger's client certificate from ``tls.cert_dir``) and, for profile 2, with the
charger's upstream password (``auth``: a template or a stored password) as Basic auth, exactly as the primary's
link and a live cutover's new link are. The mirror's password never reaches a log line, refused or accepted.

The charger side is profile 0 (plain ws, no auth) throughout: only the backend side is under test. Stand-ins and
fixtures come from the security and migration tests (``TlsCsms``, ``pki``, ``log_lines``, ``call``, ...).
"""

from __future__ import annotations

import base64
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from gateway.config import Config
from gateway.ops.lifecycle import Running, running_gateway
from tests.e2e import test_security
from tests.e2e.pki import Pki
from tests.e2e.test_gateway import wait_metric
from tests.e2e.test_migration import BOOT, answers, call, put_route
from tests.e2e.test_security import TlsCsms, basic, csms_tls
from tests.helpers import StubCsms, make_config, raw_charger, stub_csms

# test_security's fixtures, used here as they are: ``pki`` (the test PKI) and the autouse ``log_lines`` (every
# structlog event and stdlib record; at teardown, none may contain one of test_security's SECRETS)
pki = test_security.pki
log_lines = test_security.log_lines

#: the mirror's per-charger password (``auth.password_template``); not one of test_security's SECRETS, so the
#: leak test below checks it itself (with its Basic form)
MIRROR_TEMPLATE = "mirror-{charger_id}-pass-8x2k4q9z"
#: a stored upstream password (admin API ``upstream``)
STORED_PW = "stored-upstream-pw-5m7n3b1v"
#: what the mirror expects in the leak test's first run, so that it refuses the gateway's (right) password
OTHER_PW = "not-what-the-gateway-sends-0000"
STATUS = {"connectorId": 1, "errorCode": "NoError", "status": "Available"}
N_STATUS = 3
#: the CALLs of charger_traffic: boot, N_STATUS statuses, one heartbeat
N_CALLS = N_STATUS + 2


@dataclass
class SecureCsms(TlsCsms):
    """``TlsCsms`` that also records the TLS version of every handshake (None: not TLS).

    ``TlsCsms`` records the Authorization header (``seen_auth``) and the client certificate's CN (``peer_cns``) per
    handshake, but not whether the connection was TLS at all.
    """

    tls_versions: list[str | None] = field(default_factory=list)

    async def handler(self, request: web.Request) -> web.StreamResponse:
        sslobj = request.transport.get_extra_info("ssl_object") if request.transport else None
        self.tls_versions.append(sslobj.version() if sslobj is not None else None)
        return await super().handler(request)


@contextlib.asynccontextmanager
async def secure_csms(pki: Pki, profile: int, password: str | None = None) -> AsyncIterator[SecureCsms]:
    """A CSMS on wss with the test PKI's server certificate; profile 3: requires a charger certificate, CN = id;
    ``password``: requires ``Basic <id>:<password>`` (else 401)."""
    c = SecureCsms(answer=answers, ssl_context=csms_tls(pki, profile == 3), basic_password=password)
    await c.start()
    try:
        yield c
    finally:
        await c.stop()


def p2_backend(url: str, pki: Pki, **auth: Any) -> dict[str, Any]:
    """A profile-2 backend: wss verified against the test root, Basic auth from ``auth`` (default: stored)."""
    b: dict[str, Any] = {"url": url, "security_profile": 2, "tls": {"ca": pki.root_pem}, "connect_timeout_s": 1}
    return {**b, "auth": auth} if auth else b


def p3_backend(url: str, pki: Pki, *cids: str) -> dict[str, Any]:
    """A profile-3 backend: mutual TLS, one client certificate per charger (``cids``) in ``tls.cert_dir``."""
    tls = {"ca": pki.root_pem, "cert_dir": str(pki.charger_dir(*cids))}
    return {"url": url, "security_profile": 3, "tls": tls, "connect_timeout_s": 1}


def mirrored(primary_url: str, mirror: dict[str, Any]) -> Config:
    """Route ``*`` -> primary ``a`` (plain ws), mirror ``m`` (``mirror``: a backend dict).

    (``test_migration.mirror_config`` takes the mirror as a URL only, so it cannot carry ``tls``/``auth``.)
    """
    return make_config({"a": primary_url, "m": mirror}, routes=[{"match": "*", "primary": "a", "mirrors": ["m"]}])


async def set_upstream_password(running: Running, cid: str, backend: str, password: str) -> None:
    """Store the password the gateway presents to ``backend`` for ``cid`` (``set_password`` sets the charger's)."""
    async with (
        aiohttp.ClientSession() as http,
        http.put(f"{running.admin_url()}/api/chargers/{cid}/credentials", json={"upstream": {backend: password}}) as r,
    ):
        assert r.status == 204, await r.text()


async def boot_and_statuses(ws: aiohttp.ClientWebSocketResponse) -> None:
    """BootNotification, then N_STATUS StatusNotifications (``info`` = their index), each answered."""
    assert (await call(ws, "boot", "BootNotification", BOOT))[:2] == [3, "boot"]
    for i in range(N_STATUS):
        assert (await call(ws, f"s{i}", "StatusNotification", {**STATUS, "info": str(i)}))[:2] == [3, f"s{i}"]


async def charger_traffic(ws: aiohttp.ClientWebSocketResponse) -> None:
    """The N_CALLS CALLs a mirror must get copies of: boot, statuses, a heartbeat, each answered (by the primary)."""
    await boot_and_statuses(ws)
    assert (await call(ws, "hb", "Heartbeat", {}))[:2] == [3, "hb"]


def calls_from(csms: StubCsms, cid: str) -> list[list[Any]]:
    return [f for c, f in csms.received if c == cid and f[0] == 2]


async def wait_calls(csms: StubCsms, cid: str, n: int, lines: list[str]) -> list[list[Any]]:
    """The CALLs ``csms`` got from ``cid`` once it has ``n``; on timeout, fail with what it got and why (the log)."""
    try:
        await csms.wait_for(lambda: len(csms.actions(cid)) >= n)
    except TimeoutError:
        why = [line for line in lines if "mirror" in line]
        pytest.fail(f"the CSMS got {csms.actions(cid)} of {n} CALLs from {cid}; gateway log: {why[:3]}")
    return calls_from(csms, cid)


async def wait_delivered(running: Running, n: int) -> None:
    """Until mirror ``m`` has answered ``n`` copies (an answered copy leaves the outbox: it is not sent again)."""
    await wait_metric(running.admin_url(), "ocppgw_mirror_copies_total", n, backend="m", result="delivered")


def assert_every_copy_in_order(frames: list[list[Any]]) -> None:
    """``frames`` are the copies of charger_traffic: boot first (its payload), the statuses in order, heartbeat."""
    assert [f[2] for f in frames] == ["BootNotification"] + ["StatusNotification"] * N_STATUS + ["Heartbeat"]
    assert frames[0][3] == BOOT
    assert [f[3].get("info") for f in frames[1:-1]] == [str(i) for i in range(N_STATUS)]


def assert_tls(csms: SecureCsms) -> None:
    assert csms.tls_versions, "no handshake reached the CSMS"
    assert all(v in ("TLSv1.2", "TLSv1.3") for v in csms.tls_versions), csms.tls_versions


# ---------------------------------------------------------------------------------------------------------------
# mirrors


async def test_profile2_mirror_gets_every_charger_call_in_order_boot_first_over_tls_with_basic_auth(
    pki: Pki, log_lines: list[str]
) -> None:
    cid = "CP-MP2"
    password = MIRROR_TEMPLATE.format(charger_id=cid)
    async with stub_csms(answers) as primary, secure_csms(pki, 2, password=password) as mirror:
        backend = p2_backend(mirror.url, pki, password_from="template", password_template=MIRROR_TEMPLATE)
        async with running_gateway(mirrored(primary.url, backend)) as gw, raw_charger(gw.charger_url(), cid) as ws:
            await charger_traffic(ws)
            frames = await wait_calls(mirror, cid, N_CALLS, log_lines)
            await wait_delivered(gw, N_CALLS)
            assert calls_from(mirror, cid) == frames  # all answered: none came twice
        assert_every_copy_in_order(frames)
        assert primary.actions(cid) == mirror.actions(cid)
        assert mirror.seen_auth, "the mirror saw no handshake"
        assert set(mirror.seen_auth) == {basic(cid, password)["Authorization"]}
        assert_tls(mirror)


async def test_profile3_mirror_gets_every_charger_call_in_order_over_mutual_tls_with_the_chargers_certificate(
    pki: Pki, log_lines: list[str]
) -> None:
    cid = "CP-MP3"
    async with stub_csms(answers) as primary, secure_csms(pki, 3) as mirror:
        backend = p3_backend(mirror.url, pki, cid, "CP-OTHER")
        async with running_gateway(mirrored(primary.url, backend)) as gw, raw_charger(gw.charger_url(), cid) as ws:
            await charger_traffic(ws)
            frames = await wait_calls(mirror, cid, N_CALLS, log_lines)
            await wait_delivered(gw, N_CALLS)
            assert calls_from(mirror, cid) == frames
        assert_every_copy_in_order(frames)
        assert mirror.peer_cns, "the mirror saw no handshake"
        assert set(mirror.peer_cns) == {cid}  # this charger's certificate, not another one from the directory
        assert set(mirror.seen_auth) == {None}  # profile 3: no Basic auth
        assert_tls(mirror)


# ---------------------------------------------------------------------------------------------------------------
# live cutover


async def test_live_cutover_to_a_profile2_backend_boots_it_then_moves_the_traffic_with_basic_auth(
    pki: Pki,
) -> None:
    cid = "CP-CUT2"
    async with stub_csms(answers) as a, secure_csms(pki, 2, password=STORED_PW) as b:
        cfg = make_config({"a": a.url, "b": p2_backend(b.url, pki)})
        async with running_gateway(cfg) as gw:
            await set_upstream_password(gw, cid, "b", STORED_PW)
            async with raw_charger(gw.charger_url(), cid) as ws:
                await boot_and_statuses(ws)
                await gw.hub.writer.flush(5)  # the boot and statuses are in the store, for the new primary
                assert b.connects == []
                status, body = await put_route(gw.admin_url(), cid, {"primary": "b", "mirrors": []})
                assert (status, body["result"]) == (200, "moved"), body
                assert not ws.closed
                assert (await call(ws, "hb", "Heartbeat", {}))[:2] == [3, "hb"]
                frames = calls_from(b, cid)
                assert [f[2] for f in frames] == ["BootNotification", "StatusNotification", "Heartbeat"]
                assert frames[0][3] == BOOT
                assert frames[1][3]["info"] == str(N_STATUS - 1)  # the connector's last status
                assert a.actions(cid) == ["BootNotification"] + ["StatusNotification"] * N_STATUS  # nothing after
                assert not ws.closed
        assert b.seen_auth == [basic(cid, STORED_PW)["Authorization"]]  # one link, opened with the password
        assert_tls(b)


async def test_live_cutover_to_a_profile3_backend_boots_it_then_moves_the_traffic_with_the_chargers_certificate(
    pki: Pki,
) -> None:
    cid = "CP-CUT3"
    async with stub_csms(answers) as a, secure_csms(pki, 3) as b:
        cfg = make_config({"a": a.url, "b": p3_backend(b.url, pki, cid, "CP-OTHER")})
        async with running_gateway(cfg) as gw, raw_charger(gw.charger_url(), cid) as ws:
            await boot_and_statuses(ws)
            await gw.hub.writer.flush(5)
            status, body = await put_route(gw.admin_url(), cid, {"primary": "b", "mirrors": []})
            assert (status, body["result"]) == (200, "moved"), body
            assert not ws.closed
            assert (await call(ws, "hb", "Heartbeat", {}))[:2] == [3, "hb"]
            frames = calls_from(b, cid)
            assert [f[2] for f in frames] == ["BootNotification", "StatusNotification", "Heartbeat"]
            assert frames[0][3] == BOOT
            assert a.actions(cid) == ["BootNotification"] + ["StatusNotification"] * N_STATUS
            assert not ws.closed
        assert b.peer_cns == [cid]
        assert b.seen_auth == [None]
        assert_tls(b)


# ---------------------------------------------------------------------------------------------------------------
# secrets


async def test_the_mirrors_password_is_in_no_log_line_when_the_mirror_refuses_it_or_accepts_it(
    pki: Pki, log_lines: list[str], caplog: pytest.LogCaptureFixture
) -> None:
    """First the mirror refuses the (right) password with 401 and the gateway logs the mirror unreachable; then the
    mirror accepts it and gets the copies. Neither the password nor its Basic form is in any structlog or stdlib
    line (``log_lines`` checks test_security's SECRETS at teardown, not these)."""
    cid = "CP-LEAK"
    header = basic(cid, STORED_PW)["Authorization"]
    secrets = (STORED_PW, header, header.removeprefix("Basic "), base64.b64encode(STORED_PW.encode()).decode())
    async with stub_csms(answers) as primary, secure_csms(pki, 2, password=OTHER_PW) as mirror:
        async with running_gateway(mirrored(primary.url, p2_backend(mirror.url, pki))) as gw:
            await set_upstream_password(gw, cid, "m", STORED_PW)
            async with raw_charger(gw.charger_url(), cid) as ws:
                # run 1: refused
                assert (await call(ws, "boot", "BootNotification", BOOT))[:2] == [3, "boot"]
                await wait_metric(gw.admin_url(), "ocppgw_backend_connects_total", 1, backend="m", outcome="error")
                unreachable = [line for line in log_lines if "mirror_unreachable" in line]
                assert any("401" in line for line in unreachable), f"not refused by the mirror: {unreachable}"
                assert mirror.seen_auth[:1] == [header]  # it was the password that the mirror refused
                # run 2: accepted
                mirror.basic_password = STORED_PW
                for i in range(N_STATUS):
                    assert (await call(ws, f"s{i}", "StatusNotification", {**STATUS, "info": str(i)}))[0] == 3
                assert (await call(ws, "hb", "Heartbeat", {}))[:2] == [3, "hb"]
                frames = await wait_calls(mirror, cid, N_CALLS, log_lines)
                await wait_delivered(gw, N_CALLS)
        assert_every_copy_in_order(frames)
        assert mirror.seen_auth[-1] == header
    lines = [*log_lines, *(r.getMessage() for r in caplog.records), *caplog.text.splitlines()]
    assert any("mirror_unreachable" in line for line in lines) and any("mirror_connected" in line for line in lines)
    leaked = [line for line in lines if any(s in line for s in secrets)]
    assert not leaked, f"the mirror's password in a log line: {leaked[:3]}"
