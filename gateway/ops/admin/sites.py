"""Admin API for local load management: sites, their allocation, their demand-response events.

* ``GET /api/sites``: every configured site with its last allocation (limit in force, measured draw, allocated
  total, transactions, the node controlling it), from the store: the same on every replica.
* ``GET /api/sites/{site}``: one site: its settings, its last allocation with each charger's limit, state
  (``controlled``, ``reading``: being read back, ``retrying``: its last profile was not taken, ``offline``), the
  profiles it accepted and their validity, each EVSE's current and measured draw; its events.
* ``GET /api/sites/{site}/events``: the events, scheduled and active.
* ``POST /api/sites/{site}/events`` ``{"id": "dr-1", "start": "…Z", "end": "…Z", "limit": 60}`` (or ``reduction``,
  ``duration_s``: gateway/sites/events.py): 201 with the event; 400 with what is wrong; 409 when the id exists;
  503 when the store cannot be written (the event is not stored).
* ``DELETE /api/sites/{site}/events/{id}``: cancel (204), 404 when there is no such event.

An unknown site is 404; a gateway without ``sites:`` answers 404 for all of these.
"""

from __future__ import annotations

import time
from typing import Any

from aiohttp import web

from gateway.app.sites import Sites
from gateway.ops.admin.keys import HUB
from gateway.sites.config import SiteConfig
from gateway.store import StoreUnavailable

__all__ = ["add_site_api"]


def _site(request: web.Request) -> tuple[Sites, SiteConfig] | web.Response:
    sites = request.app[HUB].sites
    name = request.match_info["site"]
    site = sites.sites.get(name) if sites is not None else None
    if sites is None or site is None:
        return web.json_response({"error": f"no site {name!r}"}, status=404)
    return sites, site


def _settings(site: SiteConfig) -> dict[str, Any]:
    return {
        "chargers": list(site.chargers), "limit": site.limit, "unit": site.unit, "margin": site.margin,
        "phases": site.phases, "period_s": site.period_s, "fairness": site.fairness,
        "meter": site.meter.topic if site.meter is not None else None,
        "fail_safe": {"current_a": site.fail_safe_a(), "validity_s": site.fail_safe.validity_s},
    }  # fmt: skip


async def list_sites(request: web.Request) -> web.Response:
    sites = request.app[HUB].sites
    out = []
    warning = None
    for name, site in (sites.sites if sites is not None else {}).items():
        try:
            summary = (await request.app[HUB].store.get_site(name)).get("summary")
        except StoreUnavailable:
            summary, warning = None, "store unreachable"
        entry = {"site": name, "limit": site.limit, "unit": site.unit}
        if summary is not None:
            entry |= {k: summary.get(k) for k in ("at", "node", "limit", "draw", "allocated", "transactions")}
            entry["events_active"] = summary.get("events_active")
        out.append(entry)
    body: dict[str, Any] = {"sites": out, "count": len(out)}
    if warning:
        body["warning"] = warning
    return web.json_response(body)


async def get_site(request: web.Request) -> web.Response:
    found = _site(request)
    if isinstance(found, web.Response):
        return found
    sites, site = found
    now = time.time()
    try:
        doc = await request.app[HUB].store.get_site(site.name)
        events = await sites.events(site.name)
    except StoreUnavailable:
        return web.json_response({"error": "store unreachable"}, status=503)
    return web.json_response(
        {
            "site": site.name,
            "settings": _settings(site),
            "allocation": doc.get("summary"),
            "events": [e.view(now, site.unit) for e in events],
        }
    )


async def list_events(request: web.Request) -> web.Response:
    found = _site(request)
    if isinstance(found, web.Response):
        return found
    sites, site = found
    try:
        events = await sites.events(site.name)
    except StoreUnavailable:
        return web.json_response({"error": "store unreachable"}, status=503)
    now = time.time()
    return web.json_response({"site": site.name, "events": [e.view(now, site.unit) for e in events]})


async def add_event(request: web.Request) -> web.Response:
    found = _site(request)
    if isinstance(found, web.Response):
        return found
    sites, site = found
    try:
        body = await request.json()
    except ValueError:
        return web.json_response({"error": "the body must be JSON"}, status=400)
    got = await sites.add_event(site.name, body)
    if isinstance(got, tuple):
        status, why = got
        return web.json_response({"error": why}, status=status)
    return web.json_response({"site": site.name, "event": got.view(time.time(), site.unit)}, status=201)


async def cancel_event(request: web.Request) -> web.Response:
    found = _site(request)
    if isinstance(found, web.Response):
        return found
    sites, site = found
    eid = request.match_info["event"]
    status = await sites.cancel_event(site.name, eid)
    if status == 404:
        return web.json_response({"error": f"no event {eid!r} at site {site.name!r}"}, status=404)
    if status == 503:
        return web.json_response({"error": "store unreachable: nothing was cancelled"}, status=503)
    return web.Response(status=204)


def add_site_api(app: web.Application) -> None:
    app.router.add_get("/api/sites", list_sites)
    app.router.add_get("/api/sites/{site}", get_site)
    app.router.add_get("/api/sites/{site}/events", list_events)
    app.router.add_post("/api/sites/{site}/events", add_event)
    app.router.add_delete("/api/sites/{site}/events/{event}", cancel_event)
