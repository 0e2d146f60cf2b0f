"""Admission pacing over real sockets: 20 chargers at once toward a backend with ``max_connects_per_s: 5``; the CSMS
stand-in sees them at that rate, and the ones that would wait too long get 503 with Retry-After, counted. Timing
bounds are coarse (a shared, noisy machine): pacing only ever makes things slower, so the bounds are lower ones."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

import aiohttp
import pytest
from aiohttp import web

from tests.e2e.test_gateway import get_metrics, metric
from tests.helpers import StubCsms, gateway, make_config


@dataclass
class TimedCsms(StubCsms):
    """The stub CSMS, with the loop time of every upstream connect."""

    connected_at: list[float] = field(default_factory=list)

    async def handler(self, request: web.Request) -> web.StreamResponse:
        self.connected_at.append(asyncio.get_running_loop().time())
        return await super().handler(request)


async def attempt(
    http: aiohttp.ClientSession, url: str
) -> tuple[int, str | None, aiohttp.ClientWebSocketResponse | None]:
    """(101, None, ws) when admitted, else (status, Retry-After, None)."""
    try:
        ws = await http.ws_connect(url, protocols=("ocpp1.6",))
    except aiohttp.WSServerHandshakeError as e:
        return e.status, (e.headers or {}).get("Retry-After"), None
    return 101, None, ws


async def storm(max_wait_s: float, n: int = 20) -> tuple[TimedCsms, list[tuple[int, str | None]], str]:
    csms = TimedCsms()
    await csms.start()
    backend = {"url": csms.url, "max_connects_per_s": 5, "max_connect_wait_s": max_wait_s}
    try:
        async with gateway(make_config({"a": backend})) as gw, aiohttp.ClientSession() as http:
            results = await asyncio.gather(*(attempt(http, f"{gw.charger_url()}/CP-{i}") for i in range(n)))
            metrics = await get_metrics(gw.admin_url())
            for _, _, ws in results:
                if ws is not None:
                    await ws.close()
    finally:
        await csms.stop()
    return csms, [(s, r) for s, r, _ in results], metrics


def max_in_one_second(times: list[float]) -> int:
    return max(sum(1 for u in times if t <= u < t + 1.0) for t in times)


@pytest.mark.slow
async def test_a_storm_waits_its_turns_and_reaches_the_csms_at_the_configured_rate() -> None:
    csms, results, m = await storm(max_wait_s=8)
    assert [s for s, _ in results] == [101] * 20
    times = sorted(csms.connected_at)
    assert len(times) == 20
    assert times[-1] - times[0] >= 3.0  # 19 intervals of 0.2 s, less what noise can take off the first
    assert max_in_one_second(times) <= 8  # ~5 a second; a loop stall may let a few overdue turns go together
    assert metric(m, "ocppgw_backend_connect_wait_seconds_count", backend="a") == 20
    assert metric(m, "ocppgw_backend_connect_wait_seconds_sum", backend="a") >= 10  # 0 + 0.2 + ... + 3.8 = 38
    assert metric(m, "ocppgw_connections_total", outcome="paced") == 0
    assert metric(m, "ocppgw_connections_total", outcome="accepted") == 20


@pytest.mark.slow
async def test_chargers_that_would_wait_too_long_get_503_with_retry_after_counted() -> None:
    csms, results, m = await storm(max_wait_s=1)
    admitted = [r for r in results if r[0] == 101]
    refused = [r for r in results if r[0] != 101]
    assert len(admitted) + len(refused) == 20
    assert 5 <= len(admitted) <= 12 and len(refused) >= 8  # 6 when all 20 arrive within one interval
    assert {s for s, _ in refused} == {503}
    retry = [int(r) for _, r in refused if r is not None]
    assert len(retry) == len(refused) and min(retry) >= 1
    assert max(retry) >= 2  # spread out at the same rate after the queue, not all told "1"
    assert len(csms.connected_at) == len(admitted)  # the refused never reached the CSMS
    assert metric(m, "ocppgw_connections_total", outcome="paced") == len(refused)
    assert metric(m, "ocppgw_backend_connect_wait_seconds_count", backend="a") == len(admitted)
