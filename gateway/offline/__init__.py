"""The outage ride-through's pure parts: its configuration (``routes[].offline``)."""

from __future__ import annotations

from gateway.offline.config import OfflineConfig, parse_offline

__all__ = ["OfflineConfig", "parse_offline"]
