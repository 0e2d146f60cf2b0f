"""State shared by gateway processes: one :class:`~gateway.store.base.Store` protocol, memory and Redis."""

from __future__ import annotations

from gateway.store.base import Lease, Store, StoreUnavailable, Subscription, Write
from gateway.store.memory import MemoryStore
from gateway.store.redis import RedisStore
from gateway.store.writer import StateWriter

__all__ = [
    "Lease",
    "MemoryStore",
    "RedisStore",
    "StateWriter",
    "Store",
    "StoreUnavailable",
    "Subscription",
    "Write",
    "open_store",
]


def open_store(url: str, prefix: str = "ocppgw") -> Store:
    """The store for a ``store.url``: ``memory://`` or a Redis URL."""
    if url.startswith("memory:"):
        return MemoryStore()
    return RedisStore.from_url(url, prefix)
