"""Durable outboxes: ordered, bounded queues of copies waiting for a consumer (mirror backends, taps).

Implementations: :class:`gateway.store.memory.MemoryOutbox` and :class:`gateway.store.redis_outbox.RedisOutbox`;
each store hands out its own (:meth:`gateway.store.base.Store.outbox`). One outbox per stream name:
``<p>:{<charger id>}:outbox:<mirror>`` for a mirror (the charger's hash tag keeps it on the charger's shard) and
``<p>:tap:<name>`` for a tap. With Redis an outbox is a Redis Stream: it survives a gateway restart and is shared
by every replica. The memory implementation keeps the same contract for one process.

Entries are JSON objects (taps) or opaque bytes (mirror copies: their frames as received, joined, so that keeping a
copy costs neither parsing nor JSON escaping; bytes that start with ``{`` are read back as JSON). Mirror copies come
in batches (:class:`Packed`): Redis stores a batch as ONE stream entry and a ``<stream>:meta`` hash says how much of
the oldest one is done (``_APPEND_MANY`` in :mod:`gateway.store.redis_outbox`); :meth:`Outbox.read` still hands
out one :class:`Entry` per copy.

Spools (``<p>:mirror-spool:<mirror>:<process>``): packed batches of many chargers' copies, written while a mirror is
down, whose entries are later moved whole, atomically, into the chargers' outboxes (:meth:`Outbox.spool_move`);
a registry set lists the spools that may hold copies, so that any process finds the ones others left.

Bounds: every append trims the outbox to ``max_len`` entries (copies, for mirror batches) and drops entries older
than ``max_age_s``; since delivered entries are deleted on acknowledgement, everything trimmed was never delivered,
and :meth:`Outbox.append` returns how many so that the caller counts them (mirror copies, tap events).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

__all__ = ["ENTRY_SEP", "Batch", "Entry", "Item", "Items", "Outbox", "Packed", "SpoolEntry"]

#: separates the entries of a :class:`Packed` batch: a control character, which cannot occur in JSON text nor in a
#: mirror record
ENTRY_SEP = b"\x1e"


Item = dict[str, Any] | bytes


@dataclass(frozen=True, slots=True)
class Packed:
    """``count`` opaque entries already joined by :data:`ENTRY_SEP` into one bytes object (mirror copies: built in
    one join by the caller, sent to Redis as one argument without another copy)."""

    blob: bytes
    count: int

    def entries(self) -> list[bytes]:
        return self.blob.split(ENTRY_SEP) if self.count else []


Items = Sequence[Item] | Packed
Batch = tuple[str, Items, int, float]  # stream, items, max_len, max_age_s


@dataclass(frozen=True, slots=True)
class Entry:
    id: str
    data: Item
    at: float  # unix seconds when appended


@dataclass(frozen=True, slots=True)
class SpoolEntry:
    """The oldest entry of a spool (see :meth:`Outbox.spool_head`): one write of a down mirror's copies, of many
    chargers, as a packed batch; ``skip``: how many of its copies were trimmed already."""

    id: str
    at: float
    skip: int
    packed: Packed

    def records(self) -> list[bytes]:
        return self.packed.entries()[self.skip :]


class Outbox(Protocol):
    async def append(self, stream: str, items: Items, max_len: int, max_age_s: float) -> int:
        """Append in order; trim by length and age; return how many entries were trimmed unsent."""
        ...

    async def read(self, stream: str, count: int) -> list[Entry]:
        """The oldest ``count`` entries, oldest first (not removed)."""
        ...

    async def ack(self, stream: str, ids: list[str]) -> None:
        """Remove delivered entries."""
        ...

    async def stats(self, stream: str) -> tuple[int, float | None]:
        """(depth, age in seconds of the oldest entry or None when empty)."""
        ...

    async def streams(self, prefix: str) -> list[str]:
        """Stream names starting with ``prefix`` that hold entries (to resume delivery after a restart)."""
        ...

    # A spool is an outbox stream of packed batches (:meth:`append` with :class:`Packed`) whose entries are moved,
    # whole and atomically, into other streams: a down mirror's copies of every charger go to one spool per gateway
    # process, and into each charger's own outbox when the mirror is back (gateway/fanout/spool.py).

    async def spool_append(self, spool: str, packed: Packed, max_len: int, max_age_s: float, registry: str) -> int:
        """:meth:`append` of one packed batch to a spool: one entry; bounds count copies; the copies trimmed. The
        spool's name goes into the set ``registry`` (see :meth:`spools`)."""
        ...

    async def spools(self, registry: str, prefix: str) -> list[str]:
        """The spools in ``registry`` whose name starts with ``prefix`` (they may hold copies)."""
        ...

    async def spool_forget(self, registry: str, spool: str) -> None:
        """Take ``spool`` out of ``registry`` if it is empty (atomically: a spool written meanwhile stays)."""
        ...

    async def spool_head(self, spool: str) -> SpoolEntry | None:
        """The oldest entry of ``spool`` (None: empty)."""
        ...

    async def spool_move(self, spool: str, entry: SpoolEntry, batches: Sequence[Batch]) -> list[int] | None:
        """Append ``batches`` (:class:`Packed` items), keeping ``entry``'s time, and remove ``entry`` from the spool,
        as one step; per batch the copies trimmed. None when ``entry`` is no longer the spool's oldest as read (moved
        or trimmed by someone else meanwhile): nothing was done."""
        ...
