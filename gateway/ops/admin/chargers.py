"""Admin API for chargers: the fleet list, one charger, an admin CALL, credentials.

* ``GET /api/chargers``: chargers with a live session, fleet-wide (from the store), marked ``local`` when on this
  process, with the session's live state when local.
* ``GET /api/chargers/{id}``: one charger: owner node, connection, last boot, connector statuses.
* ``POST /api/chargers/{id}/call`` ``{"action": ..., "payload": {...}, "timeout_s": 30}``: send a CALL to the charger
  and return ``{"result": {...}}`` or ``{"error": {"code", "description", "details"}}`` (its CALLERROR); when no
  answer comes, the same ``error`` object with the gateway's code (gateway/app/calls.py): 504 ``Timeout``, 404
  ``NotConnected``, 409 ``QueueFull``, 502 ``Disconnected``. A charger on another node (worker, replica) is reached
  through the store's node channel (gateway/app/fleet.py); the answer then names that ``node``.
* ``PUT /api/chargers/{id}/credentials`` ``{"password": "...", "upstream": {"<backend>": "..."}}`` (either or both):
  store the hash of the charger's Basic auth password (16..40 printable ASCII) and/or the password the gateway
  presents for it to a backend. 204; nothing is ever echoed or readable back. 400 on a bad body, 503 when the
  store cannot be written. ``DELETE`` the same path removes both (204).
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from gateway.app.calls import call_local
from gateway.app.credentials import set_charger_password
from gateway.ocpp.actions import KNOWN_ACTIONS
from gateway.ops.admin.keys import HUB
from gateway.security import valid_password
from gateway.store import StoreUnavailable, Write

__all__ = ["add_charger_api"]


async def list_chargers(request: web.Request) -> web.Response:
    hub = request.app[HUB]
    out: dict[str, dict[str, Any]] = {}
    store_ok = True
    try:
        fleet = await hub.store.list_connections()
    except StoreUnavailable:
        fleet, store_ok = {}, False
    for cid, info in fleet.items():
        out[cid] = {"charger_id": cid, "local": False, "connection": info}
    for cid, conn in hub.conns.items():
        out[cid] = {**out.get(cid, {"connection": None}), **conn.view(), "local": True}
    body: dict[str, Any] = {"chargers": [out[k] for k in sorted(out)], "count": len(out)}
    if not store_ok:
        body["warning"] = "store unreachable: listing this process only"
    return web.json_response(body)


async def get_charger(request: web.Request) -> web.Response:
    hub = request.app[HUB]
    cid = request.match_info["cid"]
    body: dict[str, Any] = {"charger_id": cid}
    try:
        body["node"] = await hub.store.get_owner(cid)
        # a connection record without an owner is stale (its node died): not connected
        body["connection"] = await hub.store.get_connection(cid) if body["node"] else None
        body["boot"] = await hub.store.get_boot(cid)
        body["statuses"] = await hub.store.get_statuses(cid)
    except StoreUnavailable:
        body["warning"] = "store unreachable"
    conn = hub.conns.get(cid)
    if conn is not None:
        body["session"] = conn.view()
        r = conn.route
        body["route"] = {"primary": r.primary.name, "mirrors": [b.name for b in r.mirrors], "origin": r.origin}
    elif not body.get("connection") and not body.get("boot"):
        return web.json_response({"error": "unknown charger"}, status=404)
    return web.json_response(body)


async def call_charger(request: web.Request) -> web.Response:
    hub = request.app[HUB]
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
    if cid in hub.conns:
        status, body = await call_local(hub.conns, hub.metrics, hub.log, cid, action, payload, float(timeout))
    else:
        status, body = await hub.fleet.call_remote(cid, action, payload, float(timeout))
    return web.json_response(body, status=status)


async def put_credentials(request: web.Request) -> web.Response:
    hub = request.app[HUB]
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
        isinstance(k, str) and k in hub.config.backends and isinstance(v, str) and 0 < len(v) <= 255
        for k, v in upstream.items()
    ):
        return web.json_response(
            {"error": "upstream must map configured backend names to passwords (1..255 characters)"}, status=400
        )
    try:
        if password is not None:
            await set_charger_password(hub.store, cid, password)
        if upstream:
            await hub.store.apply([Write("upcred", cid, b, {"password": v}) for b, v in upstream.items()])
    except StoreUnavailable:
        return web.json_response({"error": "store unavailable"}, status=503)
    hub.log.info(
        "charger_credentials_set", charger_id=cid, charger_password=password is not None, upstream=sorted(upstream)
    )
    return web.Response(status=204)


async def delete_credentials(request: web.Request) -> web.Response:
    hub = request.app[HUB]
    cid = request.match_info["cid"]
    writes = [Write("cred", cid, "", None)] + [Write("upcred", cid, b, None) for b in hub.config.backends]
    try:
        await hub.store.apply(writes)
    except StoreUnavailable:
        return web.json_response({"error": "store unavailable"}, status=503)
    hub.log.info("charger_credentials_deleted", charger_id=cid)
    return web.Response(status=204)


def add_charger_api(app: web.Application) -> None:
    app.router.add_get("/api/chargers", list_chargers)
    app.router.add_get("/api/chargers/{cid}", get_charger)
    app.router.add_post("/api/chargers/{cid}/call", call_charger)
    app.router.add_put("/api/chargers/{cid}/credentials", put_credentials)
    app.router.add_delete("/api/chargers/{cid}/credentials", delete_credentials)
