"""Upstream links toward CSMS backends: the link factory (the one way to open one), links, the link caller."""

from __future__ import annotations

__all__: list[str] = []
