"""Admin API for routes: cutover one charger or a batch, roll back, see a charger's route, reload the config.

* ``GET /api/chargers/{id}/route``: the route in force and its origin (``config:routes[i]`` or ``override``).
* ``PUT /api/chargers/{id}/route`` ``{"primary": "csms-b", "mirrors": ["csms-a"]}``: store the override and, for a
  charger connected here, cut it over live (gateway/app/cutover.py). 200 with ``{"result": "moved" | "unchanged" |
  "next_connection", "detail"}``; 409 with the reason when the charger stays where it is (new primary unreachable,
  boot refused, busy); 400 for unknown backends. Rollback is the same call with the old primary.
* ``DELETE /api/chargers/{id}/route``: drop the override (the config route applies at the next connection).
* ``POST /api/cutover`` ``{"match": "CP-*", "primary": ..., "mirrors": [...], "rate_per_s": 5, "dry_run": true}``:
  the chargers matching the glob (connected fleet-wide, plus those with an override), moved one by one at most
  ``rate_per_s`` per second; ``dry_run`` lists who would move. The answer lists each charger's result.
* ``POST /api/reload``: re-read the config file (as SIGHUP does); 400 with every problem when it is invalid.
"""

from __future__ import annotations

import asyncio
from fnmatch import fnmatchcase
from typing import Any

from aiohttp import web

from gateway.app.cutover import cutover
from gateway.app.reload import reload_config
from gateway.app.routing import Route
from gateway.ops.admin.keys import HUB
from gateway.store import StoreUnavailable, Write

__all__ = ["add_route_api"]


def _route_view(route: Route) -> dict[str, Any]:
    return {
        "primary": route.primary.name,
        "mirrors": [b.name for b in route.mirrors],
        "origin": route.origin,
    }


async def get_route(request: web.Request) -> web.Response:
    hub = request.app[HUB]
    cid = request.match_info["cid"]
    conn = hub.conns.get(cid)
    if conn is not None:
        return web.json_response({"charger_id": cid, "connected": True, **_route_view(conn.route)})
    try:
        route = await hub.routes.resolve(cid, strict=True)
    except StoreUnavailable:
        return web.json_response({"error": "store unreachable"}, status=503)
    if route is None:
        return web.json_response({"error": "no route for this charger id"}, status=404)
    return web.json_response({"charger_id": cid, "connected": False, **_route_view(route)})


def _parse(body: Any) -> tuple[str, list[str]] | str:
    if not isinstance(body, dict) or not isinstance(body.get("primary"), str):
        return 'body must be {"primary": backend, "mirrors": [backend, ...]}'
    mirrors = body.get("mirrors", [])
    if not isinstance(mirrors, list) or not all(isinstance(m, str) for m in mirrors):
        return "mirrors must be a list of backend names"
    return body["primary"], mirrors


async def put_route(request: web.Request) -> web.Response:
    hub = request.app[HUB]
    cid = request.match_info["cid"]
    try:
        parsed = _parse(await request.json())
    except ValueError:
        return web.json_response({"error": "body must be JSON"}, status=400)
    if isinstance(parsed, str):
        return web.json_response({"error": parsed}, status=400)
    primary, mirrors = parsed
    res = await cutover(hub, cid, primary, mirrors)
    status = 200 if res.ok else 400 if res.result in ("unknown_backend", "no_route") else 409
    return web.json_response(
        {"charger_id": cid, "ok": res.ok, "result": res.result, "detail": res.detail}, status=status
    )


async def delete_route(request: web.Request) -> web.Response:
    hub = request.app[HUB]
    cid = request.match_info["cid"]
    try:
        await hub.store.apply([Write("route", cid, "", None)])
    except StoreUnavailable:
        return web.json_response({"error": "store unreachable"}, status=503)
    return web.Response(status=204)


async def batch_cutover(request: web.Request) -> web.Response:
    hub = request.app[HUB]
    try:
        body = await request.json()
    except ValueError:
        return web.json_response({"error": "body must be JSON"}, status=400)
    parsed = _parse(body)
    if isinstance(parsed, str):
        return web.json_response({"error": parsed}, status=400)
    primary, mirrors = parsed
    match = body.get("match")
    rate = body.get("rate_per_s", 1)
    if not isinstance(match, str) or not match:
        return web.json_response({"error": "match must be a glob on charger ids"}, status=400)
    if not isinstance(rate, int | float) or not 0 < rate <= 1000:
        return web.json_response({"error": "rate_per_s must be in (0, 1000]"}, status=400)
    if hub.routes.backend(primary) is None or any(hub.routes.backend(m) is None for m in mirrors):
        return web.json_response({"error": "unknown backend"}, status=400)
    try:
        fleet = set(await hub.store.list_connections()) | set(await hub.store.list_route_overrides())
    except StoreUnavailable:
        return web.json_response({"error": "store unreachable"}, status=503)
    fleet |= set(hub.conns)
    chosen = sorted(cid for cid in fleet if fnmatchcase(cid, match) and hub.routes.configured(cid) is not None)
    if body.get("dry_run"):
        return web.json_response({"dry_run": True, "would_move": chosen, "count": len(chosen)})
    results = []
    loop = asyncio.get_running_loop()
    start = loop.time()
    for i, cid in enumerate(chosen):
        due = start + i / rate
        if due > loop.time():
            await asyncio.sleep(due - loop.time())
        res = await cutover(hub, cid, primary, mirrors)
        results.append({"charger_id": cid, "ok": res.ok, "result": res.result, "detail": res.detail})
    hub.log.info(
        "batch_cutover", match=match, primary=primary, count=len(chosen), moved=sum(1 for r in results if r["ok"])
    )
    return web.json_response({"dry_run": False, "results": results, "count": len(results)})


async def reload(request: web.Request) -> web.Response:
    hub = request.app[HUB]
    res = await reload_config(hub, hub.config_path)
    return web.json_response(res.body(), status=200 if res.ok else 400)


def add_route_api(app: web.Application) -> None:
    app.router.add_get("/api/chargers/{cid}/route", get_route)
    app.router.add_put("/api/chargers/{cid}/route", put_route)
    app.router.add_delete("/api/chargers/{cid}/route", delete_route)
    app.router.add_post("/api/cutover", batch_cutover)
    app.router.add_post("/api/reload", reload)
