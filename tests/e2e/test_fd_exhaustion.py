"""A gateway out of file descriptors (each charger takes two: its socket and its upstream link's) refuses the next
charger with 503 ``at_capacity`` and a Retry-After, counts it, says so once in the log, does not ride it through (the
CSMS is not down), and admits chargers again once descriptors are free.

The gateway runs in this process, so the test takes the descriptors itself: the soft RLIMIT_NOFILE lowered to a
little above what is open, filled with /dev/null, then exactly two given back (the charger's client socket and the
socket the gateway accepts): the upstream link's socket is the one that fails."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import json
import os
import resource
from collections.abc import Iterator
from typing import Any

import aiohttp
import pytest

from tests.e2e import test_security
from tests.e2e.test_gateway import get_metrics, metric
from tests.helpers import StubCsms, gateway, make_config

#: every log event of the test (test_security's fixture: it also checks that no secret is in one)
log_lines = test_security.log_lines


@contextlib.contextmanager
def descriptors_left(n: int) -> Iterator[None]:
    """Only ``n`` file descriptors free in this process until the block ends."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    highest = max(int(f) for f in os.listdir("/proc/self/fd"))
    resource.setrlimit(resource.RLIMIT_NOFILE, (highest + 64, hard))
    held: list[int] = []
    try:
        while True:
            try:
                held.append(os.open("/dev/null", os.O_RDONLY))
            except OSError as e:
                assert e.errno == errno.EMFILE
                break
        for _ in range(n):
            os.close(held.pop())
        yield
    finally:
        for fd in held:
            os.close(fd)
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


async def settled(conns: dict[str, Any]) -> None:
    """Until the warm-up charger's session, its link and the CSMS's side are gone (their descriptors closed)."""
    async with asyncio.timeout(10):
        counts: list[int] = []
        while conns or len(counts) < 3 or len(set(counts[-3:])) > 1:
            counts.append(len(os.listdir("/proc/self/fd")))
            await asyncio.sleep(0.05)


async def attempt(http: aiohttp.ClientSession, url: str) -> tuple[int, str | None]:
    try:
        ws = await http.ws_connect(url, protocols=("ocpp1.6",))
    except aiohttp.WSServerHandshakeError as e:
        return e.status, (e.headers or {}).get("Retry-After")
    await ws.send_str('[2,"b","BootNotification",{"chargePointVendor":"V","chargePointModel":"M"}]')
    msg = await ws.receive(timeout=5)
    await ws.close()
    assert msg.type is aiohttp.WSMsgType.TEXT and json.loads(msg.data)[:2] == [3, "b"], msg
    return 101, None


def answer(cid: str, action: str, payload: dict[str, Any]) -> dict[str, Any]:
    return {"status": "Accepted", "currentTime": "2027-01-01T00:00:00Z", "interval": 60}


@pytest.mark.parametrize("offline", ["close", "ride_through"])
async def test_out_of_descriptors_is_503_at_capacity_not_an_outage(offline: str, log_lines: list[str]) -> None:
    csms = StubCsms(answer=answer)
    await csms.start()
    routes = [{"match": "*", "primary": "a", "offline": {"mode": offline}}]
    try:
        async with gateway(make_config({"a": csms.url}, routes=routes)) as gw, aiohttp.ClientSession() as http:
            assert await attempt(http, f"{gw.charger_url()}/CP-WARM") == (101, None)  # pools and caches opened
            await settled(gw.hub.conns)
            with descriptors_left(2):
                full = [await attempt(http, f"{gw.charger_url()}/CP-FULL") for _ in range(2)]
            assert full == [(503, "30"), (503, "30")]
            assert await attempt(http, f"{gw.charger_url()}/CP-AFTER") == (101, None)
            m = await get_metrics(gw.admin_url())
    finally:
        await csms.stop()
    assert metric(m, "ocppgw_connections_total", outcome="at_capacity") == 2
    assert metric(m, "ocppgw_connections_total", outcome="accepted") == 2
    assert metric(m, "ocppgw_backend_connects_total", backend="a", outcome="no_fd") == 2
    assert "CP-FULL" not in csms.connects
    assert sum('"fd_exhausted"' in line for line in log_lines) == 1  # once, not per charger
    assert not any("ride_through_started" in line for line in log_lines)
