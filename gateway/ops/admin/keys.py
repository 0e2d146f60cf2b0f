"""The admin app's typed keys (aiohttp AppKeys: no module globals)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from aiohttp import web

from gateway.app.hub import Hub

__all__ = ["HUB", "RENDER_METRICS"]

HUB = web.AppKey("hub", Hub)
#: /metrics body when this process is not the only one (the main process of workers > 1 sums its workers)
RENDER_METRICS: web.AppKey[Callable[[], Awaitable[bytes]]] = web.AppKey("render_metrics")
