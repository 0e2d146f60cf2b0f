"""Copies out of the message path: the durable feed, mirror feeds, their board and spool, taps."""

from __future__ import annotations

__all__: list[str] = []
