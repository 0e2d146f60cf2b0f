"""Admin listener: /metrics, /healthz, /readyz and the JSON API under /api/.

* ``GET /healthz``: 200 while the process serves (liveness).
* ``GET /readyz``: 200 when the charger listener is up, the gateway is not draining and the store answers a ping;
  503 with the reasons otherwise.
* ``GET /metrics``: Prometheus text format.
* ``/api/chargers…``: :mod:`gateway.ops.admin.chargers`; routes, cutover and reload: :mod:`gateway.ops.admin.routes`;
  ``/api/compliance``: :mod:`gateway.ops.admin.compliance`.
  ``/api/sites…`` (local load management): :mod:`gateway.ops.admin.sites`. ``/api/ride-through…`` (outage
  ride-through): :mod:`gateway.ops.admin.ride`.

``/api/*`` requires ``Authorization: Bearer <admin.token>`` when a token is configured (compared in constant time);
the config refuses a non-loopback ``admin.host`` without a token. ``admin.tls`` serves the listener over HTTPS.
"""

from __future__ import annotations

import asyncio
import hmac
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from gateway.app.hub import Hub
from gateway.ops.admin.chargers import add_charger_api
from gateway.ops.admin.compliance import add_compliance_api
from gateway.ops.admin.keys import HUB, RENDER_METRICS
from gateway.ops.admin.ride import add_ride_api
from gateway.ops.admin.routes import add_route_api
from gateway.ops.admin.sites import add_site_api
from gateway.store import StoreUnavailable

__all__ = ["admin_app"]


@web.middleware
async def _auth(request: web.Request, handler: Any) -> web.StreamResponse:
    hub = request.app[HUB]
    token = hub.config.admin.token
    if token and request.path.startswith("/api/"):
        got = request.headers.get("Authorization", "")
        expected = f"Bearer {token}"
        if not hmac.compare_digest(got.encode(), expected.encode()):
            return web.json_response(
                {"error": "missing or wrong bearer token"}, status=401, headers={"WWW-Authenticate": "Bearer"}
            )
    resp: web.StreamResponse = await handler(request)
    return resp


async def healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


async def readyz(request: web.Request) -> web.Response:
    hub = request.app[HUB]
    problems = []
    if hub.draining:
        problems.append("draining")
    try:
        async with asyncio.timeout(2):
            await hub.store.ping()
        hub.writer.mark(True)
    except (StoreUnavailable, TimeoutError):
        hub.writer.mark(False)
        problems.append("store unreachable")
    if problems:
        return web.json_response({"status": "not ready", "problems": problems}, status=503)
    return web.json_response({"status": "ready", "chargers": len(hub.conns)})


async def metrics(request: web.Request) -> web.Response:
    hub = request.app[HUB]
    render = request.app.get(RENDER_METRICS)
    return web.Response(
        body=await render() if render is not None else hub.metrics.render(),
        content_type="text/plain",
        charset="utf-8",
        headers={"X-Content-Type-Options": "nosniff"},
    )


def admin_app(hub: Hub, render_metrics: Callable[[], Awaitable[bytes]] | None = None) -> web.Application:
    app = web.Application(middlewares=[_auth])
    app[HUB] = hub
    if render_metrics is not None:
        app[RENDER_METRICS] = render_metrics
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics)
    add_charger_api(app)
    add_route_api(app)
    add_compliance_api(app)
    add_site_api(app)
    add_ride_api(app)
    return app
