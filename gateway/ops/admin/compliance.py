"""Admin API: ``GET /api/compliance`` (``?min_count=N``, default 3): the compliance report, fleet-wide from the store
(gateway/quirks/report.py), this process's pending counts added first. 503 when the store cannot be read."""

from __future__ import annotations

from aiohttp import web

from gateway.ops.admin.keys import HUB
from gateway.quirks.report import build
from gateway.store import StoreUnavailable

__all__ = ["add_compliance_api"]


async def get_compliance(request: web.Request) -> web.Response:
    hub = request.app[HUB]
    try:
        min_count = int(request.query.get("min_count", "3"))
    except ValueError:
        return web.json_response({"error": "min_count must be an integer"}, status=400)
    recorder = hub.compliance
    if recorder is not None:
        for conn in list(hub.conns.values()):
            recorder.count_frames(conn)
        await recorder.flush()
    try:
        models = await hub.store.compliance().read()
    except StoreUnavailable:
        return web.json_response({"error": "store unavailable"}, status=503)
    body = build(models, min_count=max(1, min_count))
    body["recording"] = recorder is not None
    return web.json_response(body)


def add_compliance_api(app: web.Application) -> None:
    app.router.add_get("/api/compliance", get_compliance)
