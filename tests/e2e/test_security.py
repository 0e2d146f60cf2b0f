"""Security profiles 0-3 over real loopback sockets (TLS with trustme certificates), both sides of the gateway.

Charger side: Basic auth (profile 1), TLS + Basic (2), mutual TLS (3), every refusal before the upgrade, the rate
limit, allowlists. Backend side: a profile-0 charger reaching backends that require profiles 2 and 3. Password
rotation under both policies. Every log line of the module is captured and checked for secrets.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import datetime as dt
import json
import logging
import signal
import socket
import ssl
import sys
import warnings
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import structlog
from aiohttp import web
from ocpp.v16 import call as call16

from gateway.logging import configure_logging
from gateway.ops.demo import Charger16, ConnectionClosed, OcppWs
from gateway.ops.lifecycle import Running
from gateway.security import hash_password
from gateway.store import Write
from tests.e2e.pki import Pki
from tests.e2e.test_gateway import get_metrics, metric
from tests.helpers import StubCsms, gateway, make_config, recv_json

PW = "correct-horse-battery-1"  # 23 characters, a valid OCPP Basic auth password
NEW_PW = "rotated-password-0123456789"
UP_PW = "upstream-secret-4567890123"
SECRETS = (PW, NEW_PW, UP_PW, "wrong-password-xxxxxxx")


# ---------------------------------------------------------------------------------------------------------------
# fixtures


@pytest.fixture
def pki(tmp_path: Path) -> Pki:
    return Pki(tmp_path)


@pytest.fixture(autouse=True)
def log_lines(caplog: pytest.LogCaptureFixture) -> Iterator[list[str]]:
    """Every structlog event (all levels, unredacted: secrets must never be *passed*) and stdlib record (picows)."""
    lines: list[str] = []

    def keep(_logger: Any, _name: str, event: Any) -> Any:
        lines.append(json.dumps(event, default=str))
        raise structlog.DropEvent

    structlog.configure(
        processors=[structlog.processors.add_log_level, keep],
        wrapper_class=structlog.make_filtering_bound_logger(logging.DEBUG),
        cache_logger_on_first_use=False,
    )
    caplog.set_level(logging.DEBUG)
    try:
        yield lines
    finally:
        lines.extend(r.getMessage() for r in caplog.records)
        configure_logging("warning", "json")
        leaked = [line for line in lines if any(s in line for s in SECRETS)]
        assert not leaked, f"secret in a log line: {leaked[:3]}"


def basic(cid: str, password: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{cid}:{password}".encode()).decode()}


async def set_password(running: Running, cid: str, password: str) -> None:
    async with (
        aiohttp.ClientSession() as http,
        http.put(f"{running.admin_url()}/api/chargers/{cid}/credentials", json={"password": password}) as r,
    ):
        assert r.status == 204, await r.text()
        assert await r.read() == b""


async def status_of(
    url: str, headers: dict[str, str] | None = None, ssl_ctx: ssl.SSLContext | None = None, proto: str = "ocpp1.6"
) -> int:
    """101 when upgraded, else the HTTP status of the refusal."""
    async with aiohttp.ClientSession() as http:
        try:
            async with http.ws_connect(url, protocols=(proto,), headers=headers, ssl=ssl_ctx if ssl_ctx else True):
                return 101
        except aiohttp.WSServerHandshakeError as e:
            return e.status


@dataclass
class TlsCsms(StubCsms):
    """The stub CSMS on wss, optionally requiring a client certificate (profile 3) or Basic auth (profile 2)."""

    ssl_context: ssl.SSLContext | None = None
    basic_password: str | None = None
    seen_auth: list[str | None] = field(default_factory=list)
    peer_cns: list[str | None] = field(default_factory=list)

    async def handler(self, request: web.Request) -> web.StreamResponse:
        cid = request.match_info["cid"]
        got = request.headers.get("Authorization")
        self.seen_auth.append(got)
        sslobj = request.transport.get_extra_info("ssl_object") if request.transport else None
        cert = sslobj.getpeercert() if sslobj is not None else None
        cn = next((v for rdn in (cert or {}).get("subject", ()) for k, v in rdn if k == "commonName"), None)
        self.peer_cns.append(cn)
        if self.basic_password is not None and got != basic(cid, self.basic_password)["Authorization"]:
            raise web.HTTPUnauthorized(headers={"WWW-Authenticate": 'Basic realm="csms"'})
        if self.ssl_context is not None and self.ssl_context.verify_mode == ssl.CERT_REQUIRED and cn != cid:
            raise web.HTTPForbidden()
        return await super().handler(request)

    async def start(self, port: int = 0) -> str:
        app = web.Application()
        app.router.add_get("/ocpp/{cid}", self.handler)
        self.runner = web.AppRunner(app, handle_signals=False)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", port, ssl_context=self.ssl_context)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.url = f"{'wss' if self.ssl_context else 'ws'}://127.0.0.1:{self.port}/ocpp"
        return self.url


@contextlib.asynccontextmanager
async def csms(**kw: Any) -> AsyncIterator[TlsCsms]:
    c = TlsCsms(
        answer=lambda cid, action, p: {"status": "Accepted", "currentTime": "2026-01-01T00:00:00Z", "interval": 60},
        **kw,
    )
    await c.start()
    try:
        yield c
    finally:
        await c.stop()


def csms_tls(pki: Pki, require_client_cert: bool) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(pki.csms_cert, pki.csms_key)
    if require_client_cert:
        ctx.load_verify_locations(pki.charger_ca_pem)
        ctx.verify_mode = ssl.CERT_REQUIRED
    return ctx


def tls_listener(pki: Pki, profile: int, **extra: Any) -> dict[str, Any]:
    tls: dict[str, Any] = {"cert": pki.gw_cert, "key": pki.gw_key}
    if profile == 3 or extra.pop("client_ca", False):
        tls["client_ca"] = pki.charger_ca_pem
    return {"name": f"p{profile}", "host": "127.0.0.1", "port": 0, "ping_interval_s": 0, "security_profile": profile,
            "tls": tls, **extra}  # fmt: skip


def plain_listener(profile: int, name: str = "plain") -> dict[str, Any]:
    return {"name": name, "host": "127.0.0.1", "port": 0, "ping_interval_s": 0, "security_profile": profile}


@contextlib.asynccontextmanager
async def ocpp_charger(url: str, cid: str, **kw: Any) -> AsyncIterator[Any]:
    """The ``ocpp`` package's 1.6 charger, connected with ``kw`` (headers, ssl), its receive loop running."""
    async with aiohttp.ClientSession() as http, http.ws_connect(f"{url}/{cid}", protocols=("ocpp1.6",), **kw) as ws:
        cp = Charger16(cid, OcppWs(ws))
        reader = asyncio.create_task(cp.start())
        try:
            yield cp
        finally:
            await ws.close()
            with contextlib.suppress(ConnectionClosed):
                await reader


async def boot(cp: Any) -> str:
    r = await cp.call(call16.BootNotification(charge_point_model="M", charge_point_vendor="V"), suppress=False)
    return str(r.status)


# ---------------------------------------------------------------------------------------------------------------
# charger side: accept paths


async def test_profile1_charger_with_its_password_is_admitted_over_ws() -> None:
    async with csms() as c, gateway(make_config({"a": c.url}, listen=[plain_listener(1)])) as gw:
        await set_password(gw, "CP-1", PW)
        async with ocpp_charger(gw.charger_url(), "CP-1", headers=basic("CP-1", PW)) as cp:
            assert await boot(cp) == "Accepted"
        assert c.actions("CP-1") == ["BootNotification"]
        m = await get_metrics(gw.admin_url())
        assert metric(m, "ocppgw_connections_total", outcome="accepted") == 1


async def test_profile2_charger_over_tls_gets_the_whole_chain_and_is_admitted(pki: Pki) -> None:
    async with csms() as c, gateway(make_config({"a": c.url}, listen=[tls_listener(pki, 2)])) as gw:
        url = gw.charger_url()
        assert url.startswith("wss://")
        await set_password(gw, "CP-2", PW)
        # the charger trusts the root only: the handshake verifies only because the intermediate is served
        async with ocpp_charger(url, "CP-2", headers=basic("CP-2", PW), ssl=pki.client_context()) as cp:
            assert await boot(cp) == "Accepted"
        m = await get_metrics(gw.admin_url())
        assert metric(m, "ocppgw_tls_handshakes_total", listener="p2", outcome="ok") >= 1


async def test_profile3_charger_with_its_certificate_is_admitted(pki: Pki) -> None:
    async with csms() as c, gateway(make_config({"a": c.url}, listen=[tls_listener(pki, 3)])) as gw:
        ctx = pki.client_context(pki.charger("CP-3"))
        async with ocpp_charger(gw.charger_url(), "CP-3", ssl=ctx) as cp:
            assert await boot(cp) == "Accepted"


# ---------------------------------------------------------------------------------------------------------------
# charger side: refusals


@pytest.mark.parametrize(
    ("headers", "reason"),
    [
        (basic("CP-1", "wrong-password-xxxxxxx"), "wrong_password"),
        (None, "missing_credentials"),
        (basic("CP-OTHER", PW), "wrong_username"),
        ({"Authorization": "Basic !!!notbase64"}, "malformed"),
        ({"Authorization": "Bearer abc"}, "malformed"),
    ],
)
async def test_bad_basic_credentials_get_401_before_the_upgrade(headers: dict[str, str] | None, reason: str) -> None:
    async with csms() as c, gateway(make_config({"a": c.url}, listen=[plain_listener(1)])) as gw:
        await set_password(gw, "CP-1", PW)
        async with aiohttp.ClientSession() as http:
            with pytest.raises(aiohttp.WSServerHandshakeError) as info:
                async with http.ws_connect(gw.charger_url() + "/CP-1", protocols=("ocpp1.6",), headers=headers):
                    pass
        assert info.value.status == 401
        assert info.value.headers is not None
        assert info.value.headers.get("WWW-Authenticate", "").startswith('Basic realm="ocpp"')
        assert c.connects == []
        m = await get_metrics(gw.admin_url())
        assert metric(m, "ocppgw_auth_failures_total", reason=reason) == 1
        assert metric(m, "ocppgw_connections_total", outcome="unauthorized") == 1


async def test_unknown_charger_id_is_refused_like_a_wrong_password() -> None:
    async with csms() as c, gateway(make_config({"a": c.url}, listen=[plain_listener(1)])) as gw:
        assert await status_of(gw.charger_url() + "/NOBODY", basic("NOBODY", PW)) == 401


async def test_tls11_client_is_refused_in_the_tls_handshake(pki: Pki) -> None:
    async with csms() as c, gateway(make_config({"a": c.url}, listen=[tls_listener(pki, 2)])) as gw:
        ctx = pki.client_context()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)  # TLS 1.1 is deprecated: that is the point
            ctx.minimum_version = ssl.TLSVersion.TLSv1
            ctx.maximum_version = ssl.TLSVersion.TLSv1_1
        ctx.set_ciphers("DEFAULT:@SECLEVEL=0")  # the refusal must be the server's, not the client library's
        with pytest.raises(aiohttp.ClientConnectorError):
            await status_of(gw.charger_url() + "/CP-2", basic("CP-2", PW), ctx)
        m = await get_metrics(gw.admin_url())
        assert metric(m, "ocppgw_tls_handshakes_total", listener="p2", outcome="protocol_version") == 1
        assert c.connects == []


@pytest.mark.parametrize("case", ["untrusted", "expired"])
async def test_bad_client_certificate_is_refused_in_the_tls_handshake(pki: Pki, case: str) -> None:
    cert = pki.charger("CP-3", ca=pki.other_ca) if case == "untrusted" else pki.charger("CP-3", expired=True)
    async with csms() as c, gateway(make_config({"a": c.url}, listen=[tls_listener(pki, 3)])) as gw:
        with pytest.raises((aiohttp.ClientError, ConnectionError)):
            await status_of(gw.charger_url() + "/CP-3", ssl_ctx=pki.client_context(cert))
        m = await get_metrics(gw.admin_url())
        outcome = "untrusted_cert" if case == "untrusted" else "expired_cert"
        # (aiohttp may retry a connection the server dropped: at least one refusal, counted with its reason)
        assert metric(m, "ocppgw_tls_handshakes_total", listener="p3", outcome=outcome) >= 1
        assert metric(m, "ocppgw_tls_handshakes_total", listener="p3", outcome="ok") == 0
        assert c.connects == []


async def test_client_certificate_of_another_charger_is_refused_with_403(pki: Pki) -> None:
    async with csms() as c, gateway(make_config({"a": c.url}, listen=[tls_listener(pki, 3)])) as gw:
        ctx = pki.client_context(pki.charger("CP-OTHER"))
        assert await status_of(gw.charger_url() + "/CP-3", ssl_ctx=ctx) == 403
        m = await get_metrics(gw.admin_url())
        assert metric(m, "ocppgw_auth_failures_total", reason="cert_cn_mismatch") == 1
        assert c.connects == []


async def test_weaker_profile_than_the_route_requires_is_refused(pki: Pki) -> None:
    routes = [
        {"match": "SEC3-*", "primary": "a", "security_profile": 3},
        {"match": "SEC2-*", "primary": "a", "security_profile": 2},
        {"match": "*", "primary": "a"},
    ]
    listeners = [plain_listener(1), tls_listener(pki, 2, client_ca=True)]
    async with csms() as c, gateway(make_config({"a": c.url}, listen=listeners, routes=routes)) as gw:
        for cid in ("SEC3-1", "SEC2-1", "LEGACY-1"):
            await set_password(gw, cid, PW)
        plain, tls = gw.charger_url(), gw.charger_url(listener="p2")
        # Basic auth over plain ws is profile 1: not enough for a profile-2 or profile-3 route
        assert await status_of(plain + "/SEC2-1", basic("SEC2-1", PW)) == 403
        assert await status_of(plain + "/SEC3-1", basic("SEC3-1", PW)) == 403
        # TLS + Basic (profile 2) is not enough for profile 3; a client certificate is
        assert await status_of(tls + "/SEC3-1", basic("SEC3-1", PW), pki.client_context()) == 403
        assert await status_of(tls + "/SEC3-1", None, pki.client_context(pki.charger("SEC3-1"))) == 101
        # stronger than required is fine
        assert await status_of(tls + "/SEC2-1", basic("SEC2-1", PW), pki.client_context()) == 101
        assert await status_of(plain + "/LEGACY-1", basic("LEGACY-1", PW)) == 101
        m = await get_metrics(gw.admin_url())
        assert metric(m, "ocppgw_auth_failures_total", reason="weaker_profile") == 2
        assert metric(m, "ocppgw_auth_failures_total", reason="no_client_cert") == 1
        assert metric(m, "ocppgw_connections_total", outcome="forbidden") == 3


async def test_brute_force_hits_the_rate_limit_even_with_the_right_password() -> None:
    security = {"auth_failures_per_charger": 3, "auth_failures_per_address": 100, "auth_failure_window_s": 60}
    async with csms() as c, gateway(make_config({"a": c.url}, listen=[plain_listener(1)], security=security)) as gw:
        await set_password(gw, "CP-1", PW)
        await set_password(gw, "CP-2", PW)
        url = gw.charger_url()
        for _ in range(3):
            assert await status_of(url + "/CP-1", basic("CP-1", "wrong-password-xxxxxxx")) == 401
        assert await status_of(url + "/CP-1", basic("CP-1", "wrong-password-xxxxxxx")) == 429
        assert await status_of(url + "/CP-1", basic("CP-1", PW)) == 429
        assert await status_of(url + "/CP-2", basic("CP-2", PW)) == 101  # another charger id is not blocked
        m = await get_metrics(gw.admin_url())
        assert metric(m, "ocppgw_auth_failures_total", reason="wrong_password") == 3
        assert metric(m, "ocppgw_auth_failures_total", reason="rate_limited") == 2
        assert metric(m, "ocppgw_connections_total", outcome="rate_limited") == 2


async def test_per_address_limit_stops_guessing_across_charger_ids() -> None:
    security = {"auth_failures_per_charger": 100, "auth_failures_per_address": 4}
    async with csms() as c, gateway(make_config({"a": c.url}, listen=[plain_listener(1)], security=security)) as gw:
        await set_password(gw, "CP-9", PW)
        for i in range(4):
            assert await status_of(f"{gw.charger_url()}/CP-{i}", basic(f"CP-{i}", PW)) == 401
        assert await status_of(gw.charger_url() + "/CP-9", basic("CP-9", PW)) == 429


async def test_allowlist_refuses_unknown_ids() -> None:
    routes = [{"match": "*", "primary": "a", "allowlist": ["CP-OK"]}]
    async with csms() as c, gateway(make_config({"a": c.url}, routes=routes)) as gw:
        assert await status_of(gw.charger_url() + "/CP-OK") == 101
        assert await status_of(gw.charger_url() + "/CP-NO") == 403
        m = await get_metrics(gw.admin_url())
        assert metric(m, "ocppgw_auth_failures_total", reason="not_allowed") == 1


# ---------------------------------------------------------------------------------------------------------------
# backend side


async def test_profile0_charger_reaches_a_profile2_backend_with_the_stored_upstream_password(pki: Pki) -> None:
    async with csms(ssl_context=csms_tls(pki, False), basic_password=UP_PW) as c:
        backend = {"url": c.url, "security_profile": 2, "tls": {"ca": pki.root_pem}}
        async with gateway(make_config({"a": backend})) as gw:
            # no upstream password yet: the charger is kept offline
            assert await status_of(gw.charger_url() + "/CP-0") == 502
            async with aiohttp.ClientSession() as http:
                body = {"upstream": {"a": UP_PW}}
                async with http.put(f"{gw.admin_url()}/api/chargers/CP-0/credentials", json=body) as r:
                    assert r.status == 204
            async with ocpp_charger(gw.charger_url(), "CP-0") as cp:
                assert await boot(cp) == "Accepted"
            assert c.seen_auth[-1] == basic("CP-0", UP_PW)["Authorization"]


async def test_template_password_toward_backend(pki: Pki) -> None:
    async with csms(ssl_context=csms_tls(pki, False), basic_password="tpl-CP-T-" + "x" * 10) as c:
        backend = {
            "url": c.url,
            "security_profile": 2,
            "tls": {"ca": pki.root_pem},
            "auth": {"password_from": "template", "password_template": "tpl-{charger_id}-" + "x" * 10},
        }
        async with gateway(make_config({"a": backend})) as gw:
            assert await status_of(gw.charger_url() + "/CP-T") == 101


async def test_profile1_legacy_charger_reaches_a_profile3_csms_end_to_end(pki: Pki) -> None:
    """The issue's acceptance case: Basic auth over plain ws at the edge, mutual TLS (CN = charger id) upstream."""
    certs = pki.charger_dir("LEGACY-7")
    async with csms(ssl_context=csms_tls(pki, True)) as c:
        backend = {"url": c.url, "security_profile": 3, "tls": {"ca": pki.root_pem, "cert_dir": str(certs)}}
        async with gateway(make_config({"a": backend}, listen=[plain_listener(1)])) as gw:
            await set_password(gw, "LEGACY-7", PW)
            async with ocpp_charger(gw.charger_url(), "LEGACY-7", headers=basic("LEGACY-7", PW)) as cp:
                assert await boot(cp) == "Accepted"
            assert c.peer_cns == ["LEGACY-7"]
            assert c.seen_auth == [None]
            # a charger without a certificate in the directory is kept offline
            await set_password(gw, "NOCERT", PW)
            assert await status_of(gw.charger_url() + "/NOCERT", basic("NOCERT", PW)) == 502


async def test_backend_certificate_is_verified_by_default(pki: Pki) -> None:
    async with csms(ssl_context=csms_tls(pki, False)) as c:
        # no `ca`: the system trust store does not know the test root -> the link fails, the charger stays offline
        async with gateway(make_config({"a": {"url": c.url}})) as gw:
            assert await status_of(gw.charger_url() + "/CP-1") == 502
        async with gateway(make_config({"a": {"url": c.url, "tls": {"verify": False}}})) as gw:
            assert await status_of(gw.charger_url() + "/CP-1") == 101


# ---------------------------------------------------------------------------------------------------------------
# password rotation


async def test_rotation_passthrough_charger_gets_the_key_and_its_new_password_is_stored(
    log_lines: list[str],
) -> None:
    async with csms() as c, gateway(make_config({"a": c.url}, listen=[plain_listener(1)])) as gw:
        await set_password(gw, "CP-R", PW)
        url = gw.charger_url() + "/CP-R"
        async with (
            aiohttp.ClientSession() as http,
            http.ws_connect(url, protocols=("ocpp1.6",), headers=basic("CP-R", PW)) as ws,
        ):
            await c.wait_for(lambda: "CP-R" in c.sockets)
            await c.sockets["CP-R"].send_str(
                json.dumps([2, "rot-1", "ChangeConfiguration", {"key": "AuthorizationKey", "value": NEW_PW}])
            )
            got = await recv_json(ws)
            assert got == [2, "rot-1", "ChangeConfiguration", {"key": "AuthorizationKey", "value": NEW_PW}]
            await ws.send_str(json.dumps([3, "rot-1", {"status": "Accepted"}]))
            await c.wait_for(lambda: any(f[0] == 3 for _, f in c.received))
            async with asyncio.timeout(5):
                while metric(await get_metrics(gw.admin_url()), "ocppgw_password_rotations_total") < 1:
                    await asyncio.sleep(0.02)
        # the charger reconnects with its new password (A01); the old one no longer works
        assert await status_of(url, basic("CP-R", NEW_PW)) == 101
        assert await status_of(url, basic("CP-R", PW)) == 401
        m = await get_metrics(gw.admin_url())
        assert metric(m, "ocppgw_password_rotations_total", policy="passthrough", outcome="applied") == 1


async def test_rotation_terminate_gateway_answers_and_reconnects_upstream_with_the_new_password(pki: Pki) -> None:
    async with csms(ssl_context=csms_tls(pki, False), basic_password=UP_PW) as c:
        backend = {
            "url": c.url,
            "ocpp": "2.0.1",
            "security_profile": 2,
            "tls": {"ca": pki.root_pem},
            "auth": {"password_rotation": "terminate"},
        }
        async with gateway(make_config({"a": backend})) as gw:
            await gw.hub.store.apply([Write("upcred", "CP-T", "a", {"password": UP_PW})])
            async with (
                aiohttp.ClientSession() as http,
                http.ws_connect(gw.charger_url() + "/CP-T", protocols=("ocpp2.0.1",)) as ws,
            ):
                await c.wait_for(lambda: "CP-T" in c.sockets)
                data = {
                    "attributeValue": NEW_PW,
                    "component": {"name": "SecurityCtrlr"},
                    "variable": {"name": "BasicAuthPassword"},
                }
                c.basic_password = NEW_PW  # the CSMS expects the new password from now on
                await c.sockets["CP-T"].send_str(json.dumps([2, "sv-1", "SetVariables", {"setVariableData": [data]}]))
                await c.wait_for(lambda: any(f[:2] == [3, "sv-1"] for _, f in c.received))
                answer = next(f for _, f in c.received if f[:2] == [3, "sv-1"])
                assert answer == [
                    3,
                    "sv-1",
                    {
                        "setVariableResult": [
                            {
                                "attributeStatus": "Accepted",
                                "component": {"name": "SecurityCtrlr"},
                                "variable": {"name": "BasicAuthPassword"},
                            }
                        ]
                    },
                ]
                # the link comes back with the new password, and the charger never saw the CALL
                async with asyncio.timeout(5):  # the stub has no event for connects
                    while c.connects.count("CP-T") < 2 or "CP-T" not in c.sockets:
                        await asyncio.sleep(0.02)
                assert c.seen_auth[-1] == basic("CP-T", NEW_PW)["Authorization"]
                await ws.send_str(json.dumps([2, "hb", "Heartbeat", {}]))
                assert (await recv_json(ws))[:2] == [3, "hb"]
            assert await gw.hub.store.get_upstream_password("CP-T", "a") == NEW_PW
            m = await get_metrics(gw.admin_url())
            assert metric(m, "ocppgw_password_rotations_total", policy="terminate", outcome="applied") == 1
            assert metric(m, "ocppgw_backend_link_lost_total", backend="a") == 0


# ---------------------------------------------------------------------------------------------------------------
# admin API


async def test_credentials_api_validates_and_never_echoes() -> None:
    async with csms() as c, gateway(make_config({"a": c.url})) as gw:
        base = f"{gw.admin_url()}/api/chargers/CP-1/credentials"
        async with aiohttp.ClientSession() as http:
            for body in ({"password": "short"}, {"nope": 1}, {"upstream": {"unknown-backend": "x"}}, []):
                async with http.put(base, json=body) as r:
                    assert r.status == 400
                    assert PW not in await r.text()
            async with http.put(base, json={"password": PW, "upstream": {"a": UP_PW}}) as r:
                assert r.status == 204
            stored = await gw.hub.store.get_password_hash("CP-1")
            assert stored is not None and stored.startswith("scrypt$") and PW not in stored
            async with http.get(f"{gw.admin_url()}/api/chargers/CP-1") as r:
                text = await r.text()
                assert PW not in text and UP_PW not in text and "scrypt" not in text
            async with http.delete(base) as r:
                assert r.status == 204
            assert await gw.hub.store.get_password_hash("CP-1") is None
            assert await gw.hub.store.get_upstream_password("CP-1", "a") is None


async def test_credentials_file_is_imported_at_start(tmp_path: Path) -> None:
    f = tmp_path / "creds.yaml"
    f.write_text(
        f'CP-F1: {{password: "{PW}"}}\nCP-F2: {{hash: "{hash_password(NEW_PW)}", upstream: {{a: "{UP_PW}"}}}}\n'
    )
    async with csms() as c:
        cfg = make_config({"a": c.url}, listen=[plain_listener(1)], security={"credentials_file": str(f)})
        async with gateway(cfg) as gw:
            assert await status_of(gw.charger_url() + "/CP-F1", basic("CP-F1", PW)) == 101
            assert await status_of(gw.charger_url() + "/CP-F2", basic("CP-F2", NEW_PW)) == 101
            assert await gw.hub.store.get_upstream_password("CP-F2", "a") == UP_PW


async def test_certificate_expiry_is_exported_for_every_configured_certificate(pki: Pki) -> None:
    async with csms() as c:
        backend = {"url": c.url, "tls": {"ca": pki.root_pem}}
        async with gateway(make_config({"a": backend}, listen=[tls_listener(pki, 3)])) as gw:
            m = await get_metrics(gw.admin_url())
            for name in ("listen.tls.cert", "listen.tls.client_ca", "backends.a.tls.ca"):
                line = next(
                    x for x in m.splitlines() if x.startswith(f'ocppgw_certificate_expiry_seconds{{name="{name}"}}')
                )
                left = float(line.rsplit(" ", 1)[1])
                assert left > 300 * 86400, (name, left)


async def test_revoked_client_certificate_is_refused_with_a_crl(pki: Pki) -> None:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization

    cert_path, key_path = pki.charger("CP-REV")
    ca_cert = x509.load_pem_x509_certificate(pki.charger_ca.cert_pem.bytes())
    ca_key = serialization.load_pem_private_key(pki.charger_ca.private_key_pem.bytes(), None)
    revoked = x509.load_pem_x509_certificates(pki.charger_pem_bytes(cert_path))[0]
    now = dt.datetime.now(dt.UTC)
    crl = (
        x509.CertificateRevocationListBuilder()
        .issuer_name(ca_cert.subject)
        .last_update(now - dt.timedelta(hours=1))
        .next_update(now + dt.timedelta(days=7))
        .add_revoked_certificate(
            x509.RevokedCertificateBuilder().serial_number(revoked.serial_number).revocation_date(now).build()
        )
        .sign(ca_key, hashes.SHA256())  # type: ignore[arg-type]
    )
    crl_path = pki.dir / "chargers.crl.pem"
    crl_path.write_bytes(crl.public_bytes(serialization.Encoding.PEM))
    listener = tls_listener(pki, 3)
    listener["tls"]["crl"] = str(crl_path)
    async with csms() as c, gateway(make_config({"a": c.url}, listen=[listener])) as gw:
        with pytest.raises((aiohttp.ClientError, ConnectionError)):
            await status_of(gw.charger_url() + "/CP-REV", ssl_ctx=pki.client_context((cert_path, key_path)))
        ok = pki.client_context(pki.charger("CP-OK"))
        assert await status_of(gw.charger_url() + "/CP-OK", ssl_ctx=ok) == 101
        m = await get_metrics(gw.admin_url())
        assert metric(m, "ocppgw_tls_handshakes_total", listener="p3", outcome="revoked_cert") >= 1


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.slow
async def test_tls_listener_of_the_cli_process_under_uvloop(pki: Pki, tmp_path: Path) -> None:
    """``python -m gateway run`` (uvloop when installed, as in production): the start_tls + picows path on uvloop."""
    pytest.importorskip("uvloop")
    port, admin = _free_port(), _free_port()
    creds = tmp_path / "creds.yaml"
    creds.write_text(f'CP-U: {{password: "{PW}"}}\n')
    async with csms() as c:
        cfg = {
            "listen": [tls_listener(pki, 2) | {"port": port}],
            "admin": {"host": "127.0.0.1", "port": admin},
            "backends": {"a": {"url": c.url}},
            "routes": [{"match": "*", "primary": "a"}],
            "security": {"credentials_file": str(creds)},
            "logging": {"level": "debug", "format": "json"},
        }
        path = tmp_path / "gw.yaml"
        path.write_text(json.dumps(cfg))
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-c",
            "import asyncio, sys, gateway.ops.cli as c; r = c.main(sys.argv[1:]); "
            "print('LOOP', type(asyncio.get_event_loop_policy()).__module__, flush=True); sys.exit(r)",
            "run",
            "-c",
            str(path),
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        try:
            async with asyncio.timeout(20), aiohttp.ClientSession() as http:
                while True:  # the process is ready when its admin port answers
                    try:
                        async with http.get(f"http://127.0.0.1:{admin}/healthz") as r:
                            if r.status == 200:
                                break
                    except aiohttp.ClientConnectorError:
                        await asyncio.sleep(0.1)
            url = f"wss://127.0.0.1:{port}/ocpp"
            async with ocpp_charger(url, "CP-U", headers=basic("CP-U", PW), ssl=pki.client_context()) as cp:
                assert await boot(cp) == "Accepted"
            assert await status_of(url + "/CP-U", basic("CP-U", "wrong-password-xxxxxxx"), pki.client_context()) == 401
            old = pki.client_context()
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", DeprecationWarning)
                old.minimum_version, old.maximum_version = ssl.TLSVersion.TLSv1, ssl.TLSVersion.TLSv1_1
            old.set_ciphers("DEFAULT:@SECLEVEL=0")
            with pytest.raises(aiohttp.ClientConnectorError):
                await status_of(url + "/CP-U", basic("CP-U", PW), old)
            m = await get_metrics(f"http://127.0.0.1:{admin}")
            assert metric(m, "ocppgw_tls_handshakes_total", listener="p2", outcome="protocol_version") == 1
        finally:
            proc.send_signal(signal.SIGTERM)
            out, _ = await asyncio.wait_for(proc.communicate(), 20)
        text = out.decode()
        assert proc.returncode == 0, text[-2000:]
        assert "LOOP uvloop" in text
        assert '"charger_connected"' in text and '"charger_refused"' in text
        assert not any(s in text for s in SECRETS)
