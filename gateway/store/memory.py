"""In-process store: the default for one process, and the reference the contract tests hold Redis to."""

from __future__ import annotations

import copy
from typing import Any

from gateway.store.base import Write

__all__ = ["MemoryStore"]


class MemoryStore:
    """Dicts keyed like :mod:`gateway.store.keys`, values deep-copied in and out (no aliasing with callers)."""

    def __init__(self) -> None:
        self._conn: dict[str, dict[str, Any]] = {}
        self._boot: dict[str, dict[str, Any]] = {}
        self._status: dict[str, dict[str, dict[str, Any]]] = {}
        self._tx: dict[tuple[str, str], dict[str, Any]] = {}

    async def ping(self) -> None:
        return None

    async def apply(self, writes: list[Write]) -> None:
        for w in writes:
            v = copy.deepcopy(w.value)
            if w.kind == "conn":
                _put(self._conn, w.cid, v)
            elif w.kind == "boot":
                _put(self._boot, w.cid, v)
            elif w.kind == "status":
                _put(self._status.setdefault(w.cid, {}), w.sub, v)
            elif w.kind == "tx":
                _put(self._tx, (w.cid, w.sub), v)

    async def get_connection(self, cid: str) -> dict[str, Any] | None:
        return copy.deepcopy(self._conn.get(cid))

    async def list_connections(self) -> dict[str, dict[str, Any]]:
        return copy.deepcopy(self._conn)

    async def get_boot(self, cid: str) -> dict[str, Any] | None:
        return copy.deepcopy(self._boot.get(cid))

    async def get_statuses(self, cid: str) -> dict[str, dict[str, Any]]:
        return copy.deepcopy(self._status.get(cid, {}))

    async def get_translation_state(self, cid: str, backend: str) -> dict[str, Any] | None:
        return copy.deepcopy(self._tx.get((cid, backend)))

    async def close(self) -> None:
        return None


def _put(d: dict[Any, dict[str, Any]], key: Any, value: dict[str, Any] | None) -> None:
    if value is None:
        d.pop(key, None)
    else:
        d[key] = value
