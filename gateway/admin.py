"""Admin listener: /metrics, /healthz, /readyz and the JSON API under /api/.

* ``GET /healthz``: 200 while the process serves (liveness).
* ``GET /readyz``: 200 when the charger listener is up, the gateway is not draining and the store answers a ping;
  503 with the reasons otherwise.
* ``GET /metrics``: Prometheus text format.
* ``GET /api/chargers``: chargers with a live session, fleet-wide (from the store), marked ``local`` when on this
  process, with the session's live state when local.
* ``GET /api/chargers/{id}``: one charger: owner node, connection, last boot, connector statuses.
* ``POST /api/chargers/{id}/call`` ``{"action": ..., "payload": {...}, "timeout_s": 30}``: send a CALL to the charger
  and return ``{"result": {...}}`` or ``{"error": {"code", "description", "details"}}``; 504 on timeout, 404 when
  the charger is not connected anywhere, 409 when its queue is full. A charger on another node (worker, replica)
  is reached through the store's node channel (gateway.fleet); the answer then names that ``node``.

* ``PUT /api/chargers/{id}/credentials`` ``{"password": "...", "upstream": {"<backend>": "..."}}`` (either or both):
  store the hash of the charger's Basic auth password (16..40 printable ASCII) and/or the password the gateway
  presents for it to a backend. 204; nothing is ever echoed or readable back. 400 on a bad body, 503 when the
  store cannot be written. ``DELETE`` the same path removes both (204).

``/api/*`` requires ``Authorization: Bearer <admin.token>`` when a token is configured (compared in constant time);
the config refuses a non-loopback ``admin.host`` without a token. ``admin.tls`` serves the listener over HTTPS.
"""

from __future__ import annotations

import asyncio
import hmac
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from gateway.admin_routes import add_route_api
from gateway.auth import set_charger_password
from gateway.bridge import TranslatingSession
from gateway.fleet import call_local
from gateway.ocpp.actions import KNOWN_ACTIONS
from gateway.security import valid_password
from gateway.server import Gateway
from gateway.session import Session
from gateway.store import StoreUnavailable, Write

__all__ = ["GATEWAY", "admin_app"]

GATEWAY = web.AppKey("gateway", Gateway)
#: /metrics body when this process is not the only one (the main process of workers > 1 sums its workers)
RENDER_METRICS: web.AppKey[Callable[[], Awaitable[bytes]]] = web.AppKey("render_metrics")


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
        **s.in_flight(),
        "translated": s.backend_version if isinstance(s, TranslatingSession) else None,
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
    render = request.app.get(RENDER_METRICS)
    return web.Response(
        body=await render() if render is not None else gw.metrics.render(),
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
        body["node"] = await gw.store.get_owner(cid)
        # a connection record without an owner is stale (its node died): not connected
        body["connection"] = await gw.store.get_connection(cid) if body["node"] else None
        body["boot"] = await gw.store.get_boot(cid)
        body["statuses"] = await gw.store.get_statuses(cid)
    except StoreUnavailable:
        body["warning"] = "store unreachable"
    conn = gw.conns.get(cid)
    if conn is not None:
        body["session"] = _session_view(conn.session)
        if conn.route is not None:
            r = conn.route
            body["route"] = {"primary": r.primary.name, "mirrors": [b.name for b in r.mirrors], "origin": r.origin}
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
    if cid in gw.conns or gw.fleet is None:
        status, body = await call_local(gw, cid, action, payload, float(timeout))
    else:
        status, body = await gw.fleet.call_remote(cid, action, payload, float(timeout))
    return web.json_response(body, status=status)


async def put_credentials(request: web.Request) -> web.Response:
    gw = request.app[GATEWAY]
    cid = request.match_info["cid"]
    try:
        req = await request.json()
    except ValueError:
        return web.json_response({"error": "body must be JSON"}, status=400)
    if not isinstance(req, dict) or not req or set(req) - {"password", "upstream"}:
        return web.json_response({"error": 'body must be {"password": ..., "upstream": {backend: ...}}'}, status=400)
    password, upstream = req.get("password"), req.get("upstream", {})
    if password is not None and (not isinstance(password, str) or valid_password(password)):
        why = valid_password(password) if isinstance(password, str) else "must be a string"
        return web.json_response({"error": f"password {why}"}, status=400)
    if not isinstance(upstream, dict) or not all(
        isinstance(k, str) and k in gw.config.backends and isinstance(v, str) and 0 < len(v) <= 255
        for k, v in upstream.items()
    ):
        return web.json_response(
            {"error": "upstream must map configured backend names to passwords (1..255 characters)"}, status=400
        )
    try:
        if password is not None:
            await set_charger_password(gw.store, cid, password)
        if upstream:
            await gw.store.apply([Write("upcred", cid, b, {"password": v}) for b, v in upstream.items()])
    except StoreUnavailable:
        return web.json_response({"error": "store unavailable"}, status=503)
    gw.log.info(
        "charger_credentials_set", charger_id=cid, charger_password=password is not None, upstream=sorted(upstream)
    )
    return web.Response(status=204)


async def delete_credentials(request: web.Request) -> web.Response:
    gw = request.app[GATEWAY]
    cid = request.match_info["cid"]
    writes = [Write("cred", cid, "", None)] + [Write("upcred", cid, b, None) for b in gw.config.backends]
    try:
        await gw.store.apply(writes)
    except StoreUnavailable:
        return web.json_response({"error": "store unavailable"}, status=503)
    gw.log.info("charger_credentials_deleted", charger_id=cid)
    return web.Response(status=204)


def admin_app(gw: Gateway, render_metrics: Callable[[], Awaitable[bytes]] | None = None) -> web.Application:
    app = web.Application(middlewares=[_auth])
    app[GATEWAY] = gw
    if render_metrics is not None:
        app[RENDER_METRICS] = render_metrics
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/api/chargers", list_chargers)
    app.router.add_get("/api/chargers/{cid}", get_charger)
    app.router.add_post("/api/chargers/{cid}/call", call_charger)
    app.router.add_put("/api/chargers/{cid}/credentials", put_credentials)
    app.router.add_delete("/api/chargers/{cid}/credentials", delete_credentials)
    add_route_api(app)
    return app
