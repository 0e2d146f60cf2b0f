"""The admin listener (aiohttp): health, metrics and the JSON API."""

from __future__ import annotations

from gateway.ops.admin.app import admin_app

__all__ = ["admin_app"]
