"""The Store protocol: what the gateway keeps, whatever keeps it.

Writes are data (:class:`Write`), applied in batches by :meth:`Store.apply` so that the Redis implementation sends
one pipeline per batch and the write-behind queue (:mod:`gateway.store.writer`) can coalesce them. Reads are
plain coroutines. Any failure to reach the backing service raises :class:`StoreUnavailable`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal, Protocol

__all__ = ["Store", "StoreUnavailable", "Write", "WriteKind", "open_store"]

WriteKind = Literal["conn", "boot", "status", "tx"]


@dataclass(frozen=True, slots=True)
class Write:
    """One state write. ``value`` None deletes.

    ``conn``: sub unused, value = connection info. ``boot``: value = {"payload", "at"}. ``status``: sub =
    connector id, value = StatusNotification payload. ``tx``: sub = backend name, value = translation state.
    """

    kind: WriteKind
    cid: str
    sub: str
    value: dict[str, Any] | None

    @property
    def key(self) -> tuple[str, str, str]:
        """Writes with the same key supersede each other (the write-behind queue keeps the newest)."""
        return (self.kind, self.cid, self.sub)


class StoreUnavailable(Exception):
    """The backing service could not be reached or failed; the operation may be retried."""


class Store(Protocol):
    """Per-charger state. Implementations: :class:`~gateway.store.memory.MemoryStore`,
    :class:`~gateway.store.redis.RedisStore`."""

    async def ping(self) -> None:
        """Raise :class:`StoreUnavailable` unless the store answers."""
        ...

    async def apply(self, writes: list[Write]) -> None:
        """Apply writes in order (one round trip where the store allows)."""
        ...

    async def get_connection(self, cid: str) -> dict[str, Any] | None: ...

    async def list_connections(self) -> dict[str, dict[str, Any]]:
        """Every charger with a live session, fleet-wide, with its connection info."""
        ...

    async def get_boot(self, cid: str) -> dict[str, Any] | None: ...

    async def get_statuses(self, cid: str) -> dict[str, dict[str, Any]]:
        """Connector id (as a string) -> last StatusNotification payload."""
        ...

    async def get_translation_state(self, cid: str, backend: str) -> dict[str, Any] | None: ...

    async def close(self) -> None: ...


def open_store(url: str, prefix: str = "ocppgw") -> Store:
    """The store for a ``store.url``: ``memory://`` or a Redis URL."""
    if url.startswith("memory:"):
        from gateway.store.memory import MemoryStore

        return MemoryStore()
    from gateway.store.redis import RedisStore

    return RedisStore.from_url(url, prefix)
