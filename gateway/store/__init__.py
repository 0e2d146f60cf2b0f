"""State shared by gateway processes: one :class:`~gateway.store.base.Store` protocol, memory and Redis."""

from __future__ import annotations

from gateway.store.base import Store, StoreUnavailable, Subscription, Write, open_store
from gateway.store.writer import StateWriter

__all__ = ["StateWriter", "Store", "StoreUnavailable", "Subscription", "Write", "open_store"]
