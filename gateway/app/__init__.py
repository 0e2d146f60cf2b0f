"""The process: the hub and its connections, admission, routes, cutover, fleet, hot reload."""

from __future__ import annotations

__all__: list[str] = []
