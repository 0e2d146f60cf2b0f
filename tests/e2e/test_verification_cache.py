"""The verification cache shared by every process and replica, over real sockets (TLS with trustme certificates) and a
real redis-server: a second gateway *process* on the same Redis admits a charger without scrypt, a wrong password is
still refused, a rotation and a deletion invalidate the cache, and what Redis holds is a MAC, not a secret."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import redis.asyncio as aioredis

from gateway.config import parse_config
from gateway.security import hash_password
from tests.e2e.pki import Pki
from tests.e2e.test_gateway import get_metrics, metric
from tests.e2e.test_security import (
    NEW_PW,
    PW,
    SECRETS,
    _free_port,
    basic,
    csms,
    status_of,
    tls_listener,
)
from tests.helpers import gateway

SECRET = "verification-cache-secret-0123456789abcdef"
WRONG = "wrong-password-xxxxxxx"


@pytest.fixture
def pki(tmp_path: Path) -> Pki:
    return Pki(tmp_path)


def config(pki: Pki, backend_url: str, redis_url: str, creds: Path, port: int = 0, admin: int = 0) -> dict[str, Any]:
    return {
        "listen": [tls_listener(pki, 2) | {"port": port}],
        "admin": {"host": "127.0.0.1", "port": admin},
        "store": {"url": redis_url},
        "backends": {"a": {"url": backend_url}},
        "routes": [{"match": "*", "primary": "a"}],
        "security": {"credentials_file": str(creds), "verification_cache": {"secret": "${OCPPGW_TEST_CACHE_SECRET}"}},
        "session": {"shutdown_grace_s": 1},
        "logging": {"level": "debug", "format": "json"},
    }


@contextlib.asynccontextmanager
async def gateway_process(cfg: dict[str, Any], tmp_path: Path, admin: int) -> AsyncIterator[list[bytes]]:
    """``python -m gateway run`` with ``cfg``, the secret in its environment; yields its output once it is stopped
    (SIGTERM, exit 0 checked)."""
    path = tmp_path / "gw.yaml"
    path.write_text(json.dumps(cfg))
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "gateway", "run", "-c", str(path),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
        env={**os.environ, "OCPPGW_TEST_CACHE_SECRET": SECRET},
    )  # fmt: skip
    out: list[bytes] = []
    try:
        async with asyncio.timeout(20), aiohttp.ClientSession() as http:
            while True:  # ready when its admin port answers
                try:
                    async with http.get(f"http://127.0.0.1:{admin}/readyz") as r:
                        if r.status == 200:
                            break
                except aiohttp.ClientConnectorError:
                    await asyncio.sleep(0.1)
        yield out
    finally:
        proc.send_signal(signal.SIGTERM)
        text, _ = await asyncio.wait_for(proc.communicate(), 20)
        out.append(text)
    assert proc.returncode == 0, text.decode()[-2000:]


@pytest.mark.slow
async def test_a_second_gateway_process_on_the_same_redis_admits_without_scrypt(
    pki: Pki, redis_url: str, tmp_path: Path
) -> None:
    creds = tmp_path / "creds.yaml"
    creds.write_text(f'CP-1: {{hash: "{hash_password(PW)}"}}\n')  # a hash: the same after every import
    r = aioredis.from_url(redis_url)
    key = "ocppgw:{CP-1}:credproof"
    async with csms() as c:
        # the first gateway (in this process) admits the charger: one scrypt, the proof goes to Redis
        cfg = config(pki, c.url, redis_url, creds)
        async with gateway(parse_config(cfg, env={"OCPPGW_TEST_CACHE_SECRET": SECRET})) as gw:
            url = gw.charger_url()
            assert await status_of(f"{url}/CP-1", basic("CP-1", PW), pki.client_context()) == 101
            m = await get_metrics(gw.admin_url())
            assert metric(m, "ocppgw_auth_cache_total", result="miss") == 1
        proof = await r.get(key)
        assert proof is not None and len(proof) == 32
        assert 0 < await r.ttl(key) <= 30 * 86400
        stored = await r.get("ocppgw:{CP-1}:cred")
        for part in (PW.encode(), *json.loads(stored)["hash"].encode().split(b"$")[4:]):
            assert part not in proof
        assert SECRET.encode() not in proof

        # a second gateway process on the same Redis: restarted, it admits the charger without a scrypt
        port, admin = _free_port(), _free_port()
        async with gateway_process(config(pki, c.url, redis_url, creds, port, admin), tmp_path, admin) as out:
            url, tls = f"wss://127.0.0.1:{port}/ocpp", pki.client_context()
            admin_url = f"http://127.0.0.1:{admin}"
            assert await status_of(f"{url}/CP-1", basic("CP-1", PW), tls) == 101
            m = await get_metrics(admin_url)
            assert metric(m, "ocppgw_auth_cache_total", result="hit") == 1
            assert metric(m, "ocppgw_auth_cache_total", result="miss") == 0
            # a wrong password after the cached success: refused, and it cost a real scrypt
            assert await status_of(f"{url}/CP-1", basic("CP-1", WRONG), tls) == 401
            m = await get_metrics(admin_url)
            assert metric(m, "ocppgw_auth_cache_total", result="miss") == 1
            assert metric(m, "ocppgw_auth_failures_total", reason="wrong_password") == 1
            # rotation: the old password, proven before, no longer passes; the new one does, then from the cache
            async with aiohttp.ClientSession() as http:
                body = {"password": NEW_PW}
                async with http.put(f"{admin_url}/api/chargers/CP-1/credentials", json=body) as resp:
                    assert resp.status == 204
            assert await status_of(f"{url}/CP-1", basic("CP-1", PW), tls) == 401
            assert await status_of(f"{url}/CP-1", basic("CP-1", NEW_PW), tls) == 101
            assert await status_of(f"{url}/CP-1", basic("CP-1", NEW_PW), tls) == 101
            m = await get_metrics(admin_url)
            assert metric(m, "ocppgw_auth_cache_total", result="hit") == 2
            assert metric(m, "ocppgw_auth_cache_total", result="miss") == 3
            # deleting the credentials deletes the proof
            async with aiohttp.ClientSession() as http:
                async with http.delete(f"{admin_url}/api/chargers/CP-1/credentials") as resp:
                    assert resp.status == 204
            assert await r.exists(key) == 0
            assert await status_of(f"{url}/CP-1", basic("CP-1", NEW_PW), tls) == 401
    await r.aclose()
    text = out[0].decode()
    assert '"charger_connected"' in text
    assert not any(s in text for s in (*SECRETS, SECRET))


async def test_without_a_secret_the_cache_is_per_process_and_nothing_goes_to_redis(
    pki: Pki, redis_url: str, tmp_path: Path
) -> None:
    creds = tmp_path / "creds.yaml"
    creds.write_text(f'CP-1: {{hash: "{hash_password(PW)}"}}\n')
    raw = config(pki, "ws://127.0.0.1:9/ocpp", redis_url, creds)
    del raw["security"]["verification_cache"]
    r = aioredis.from_url(redis_url)
    async with csms() as c:
        raw["backends"]["a"]["url"] = c.url
        for expected in ({"miss": 1, "hit": 1}, {"miss": 1, "hit": 1}):  # each gateway starts with an empty cache
            async with gateway(parse_config(raw, env={})) as gw:
                for _ in range(2):
                    assert await status_of(f"{gw.charger_url()}/CP-1", basic("CP-1", PW), pki.client_context()) == 101
                m = await get_metrics(gw.admin_url())
                got = {k: metric(m, "ocppgw_auth_cache_total", result=k) for k in expected}
                assert got == expected
    assert [k async for k in r.scan_iter("*credproof*")] == []
    await r.aclose()
