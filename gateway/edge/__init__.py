"""The charger edge: the HTTP upgrade, charger admission by security profile, the charger's WebSocket."""

from __future__ import annotations

__all__: list[str] = []
