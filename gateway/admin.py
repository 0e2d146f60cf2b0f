"""Admin listener: /metrics, /healthz, /readyz and the JSON API under /api/.

* ``GET /healthz``: 200 while the process serves (liveness).
* ``GET /readyz``: 200 when the charger listener is up, the gateway is not draining and the store answers a ping;
  503 with the reasons otherwise.
* ``GET /metrics``: Prometheus text format.
* ``GET /api/chargers``: chargers with a live session, fleet-wide (from the store), marked ``local`` when on this
  process, with the session's live state when local.
* ``GET /api/chargers/{id}``: one charger: connection, last boot, connector statuses.
* ``POST /api/chargers/{id}/call`` ``{"action": ..., "payload": {...}, "timeout_s": 30}``: send a CALL to the charger
  and return ``{"result": {...}}`` or ``{"error": {"code", "description", "details"}}``; 504 on timeout, 404 when
  the charger is not connected here, 409 when its queue is full.

``/api/*`` requires ``Authorization: Bearer <admin.token>`` when a token is configured (compared in constant time).
"""

from __future__ import annotations

import asyncio
import hmac
from typing import Any

from aiohttp import web

from gateway.ocpp.actions import KNOWN_ACTIONS
from gateway.server import Gateway
from gateway.session import Session
from gateway.store import StoreUnavailable

__all__ = ["GATEWAY", "admin_app"]

GATEWAY = web.AppKey("gateway", Gateway)


def _session_view(s: Session) -> dict[str, Any]:
    return {
        "charger_id": s.charger_id,
        "ocpp_version": s.version,
        "backend": s.backend,
        "remote": s.remote,
        "connected_at": s.connected_at,
        "last_seen": s.last_seen,
        "frames_in": s.frames_in,
        "link_up": s.link_up,
        "outstanding": {
            "up": s.up.action if s.up else None,
            "down": s.down.action if s.down else None,
        },
        "queued": {"up": len(s.up_queue), "down": len(s.down_queue)},
    }


@web.middleware
async def _auth(request: web.Request, handler: Any) -> web.StreamResponse:
    gw = request.app[GATEWAY]
    token = gw.config.admin.token
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
    gw = request.app[GATEWAY]
    problems = []
    if gw.draining:
        problems.append("draining")
    try:
        async with asyncio.timeout(2):
            await gw.store.ping()
        gw.writer.mark(True)
    except (StoreUnavailable, TimeoutError):
        gw.writer.mark(False)
        problems.append("store unreachable")
    if problems:
        return web.json_response({"status": "not ready", "problems": problems}, status=503)
    return web.json_response({"status": "ready", "chargers": len(gw.conns)})


async def metrics(request: web.Request) -> web.Response:
    gw = request.app[GATEWAY]
    return web.Response(
        body=gw.metrics.render(),
        content_type="text/plain",
        charset="utf-8",
        headers={"X-Content-Type-Options": "nosniff"},
    )


async def list_chargers(request: web.Request) -> web.Response:
    gw = request.app[GATEWAY]
    out: dict[str, dict[str, Any]] = {}
    store_ok = True
    try:
        fleet = await gw.store.list_connections()
    except StoreUnavailable:
        fleet, store_ok = {}, False
    for cid, info in fleet.items():
        out[cid] = {"charger_id": cid, "local": False, "connection": info}
    for cid, conn in gw.conns.items():
        s = conn.session
        out[cid] = {**out.get(cid, {"connection": None}), **_session_view(s), "local": True}
    body: dict[str, Any] = {"chargers": [out[k] for k in sorted(out)], "count": len(out)}
    if not store_ok:
        body["warning"] = "store unreachable: listing this process only"
    return web.json_response(body)


async def get_charger(request: web.Request) -> web.Response:
    gw = request.app[GATEWAY]
    cid = request.match_info["cid"]
    body: dict[str, Any] = {"charger_id": cid}
    try:
        body["connection"] = await gw.store.get_connection(cid)
        body["boot"] = await gw.store.get_boot(cid)
        body["statuses"] = await gw.store.get_statuses(cid)
    except StoreUnavailable:
        body["warning"] = "store unreachable"
    conn = gw.conns.get(cid)
    if conn is not None:
        body["session"] = _session_view(conn.session)
    elif not body.get("connection") and not body.get("boot"):
        return web.json_response({"error": "unknown charger"}, status=404)
    return web.json_response(body)


async def call_charger(request: web.Request) -> web.Response:
    gw = request.app[GATEWAY]
    cid = request.match_info["cid"]
    try:
        req = await request.json()
    except ValueError:
        return web.json_response({"error": "body must be JSON"}, status=400)
    if not isinstance(req, dict):
        return web.json_response({"error": "body must be a JSON object"}, status=400)
    action, payload = req.get("action"), req.get("payload", {})
    timeout = req.get("timeout_s", 30)
    if not isinstance(action, str) or action not in KNOWN_ACTIONS:
        return web.json_response({"error": "action must be an OCPP action name"}, status=400)
    if not isinstance(payload, dict):
        return web.json_response({"error": "payload must be a JSON object"}, status=400)
    if not isinstance(timeout, int | float) or not 0 < timeout <= 300:
        return web.json_response({"error": "timeout_s must be a number in (0, 300]"}, status=400)
    conn = gw.conns.get(cid)
    if conn is None:
        return web.json_response({"error": "charger not connected to this gateway"}, status=404)
    try:
        fut = conn.session.call_charger(action, payload)
    except OverflowError as e:
        gw.metrics.admin_calls.labels("queue_full").inc()
        return web.json_response({"error": str(e)}, status=409)
    try:
        async with asyncio.timeout(timeout):
            answer = await asyncio.shield(fut)
    except TimeoutError:
        gw.metrics.admin_calls.labels("timeout").inc()
        return web.json_response({"error": "no answer from the charger in time"}, status=504)
    except ConnectionError as e:
        gw.metrics.admin_calls.labels("disconnected").inc()
        return web.json_response({"error": str(e)}, status=502)
    gw.log.info("admin_call_answered", charger_id=cid, action=action, ok=answer.error is None)
    if answer.error is not None:
        gw.metrics.admin_calls.labels("callerror").inc()
        code, desc, details = answer.error
        return web.json_response({"error": {"code": code, "description": desc, "details": details}})
    gw.metrics.admin_calls.labels("ok").inc()
    return web.json_response({"result": answer.result})


def admin_app(gw: Gateway) -> web.Application:
    app = web.Application(middlewares=[_auth])
    app[GATEWAY] = gw
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/api/chargers", list_chargers)
    app.router.add_get("/api/chargers/{cid}", get_charger)
    app.router.add_post("/api/chargers/{cid}/call", call_charger)
    return app
