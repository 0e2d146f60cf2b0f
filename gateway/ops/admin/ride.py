"""Admin API of the outage ride-through (routes[].offline.mode ride_through; gateway/app/ride.py).

* ``GET /api/ride-through``: the connected chargers of ride-through routes on this process, each with its state
  (``live``, ``riding``: the primary unreachable, the gateway answers; ``replaying``: the journal goes to the CSMS),
  journal depth and age, CALLs replayed, divergences (count, and the last one); ``?state=riding`` filters.
* ``POST /api/ride-through/{id}/replay``: replay now (202 ``{"replaying": true}``) when the link is up, otherwise
  the link tries to reconnect at once (202 ``{"replaying": false}``); 404 when the charger is not connected here on
  a ride-through route.
* ``POST /api/ride-through/{id}/drop``: remove the charger's journal unreplayed (200 ``{"dropped": n}``; the CSMS
  never gets those CALLs: counted ``ocppgw_ride_through_messages_total{outcome="dropped"}`` and logged); 503 when
  the store cannot be reached.

Token-protected like every ``/api/*`` endpoint.
"""

from __future__ import annotations

from aiohttp import web

from gateway.app.ride import Ride
from gateway.ops.admin.keys import HUB
from gateway.store import StoreUnavailable

__all__ = ["add_ride_api"]


def _ride(request: web.Request) -> Ride | web.Response:
    cid = request.match_info["cid"]
    conn = request.app[HUB].conns.get(cid)
    if conn is None or conn.ride is None:
        return web.json_response({"error": f"{cid!r} is not connected here on a ride-through route"}, status=404)
    return conn.ride


async def list_rides(request: web.Request) -> web.Response:
    want = request.query.get("state")
    rides = [c.ride.view() for c in list(request.app[HUB].conns.values()) if c.ride is not None]
    return web.json_response({"chargers": [r for r in rides if want is None or r["state"] == want]})


async def replay(request: web.Request) -> web.Response:
    ride = _ride(request)
    if isinstance(ride, web.Response):
        return ride
    return web.json_response({"replaying": ride.replay_now()}, status=202)


async def drop(request: web.Request) -> web.Response:
    ride = _ride(request)
    if isinstance(ride, web.Response):
        return ride
    try:
        n = await ride.drop()
    except StoreUnavailable:
        return web.json_response({"error": "store unreachable"}, status=503)
    return web.json_response({"dropped": n})


def add_ride_api(app: web.Application) -> None:
    app.router.add_get("/api/ride-through", list_rides)
    app.router.add_post("/api/ride-through/{cid}/replay", replay)
    app.router.add_post("/api/ride-through/{cid}/drop", drop)
